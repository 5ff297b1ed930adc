/**
 * The dashboard's region map of a 1 TiB disk (16 M regions of 64 KiB) in a real Chromium,
 * against the HTTP component and the fake appliance: the compact map loads, every written or
 * pending region shows even when one cell stands for hundreds of regions, pointing at a cell
 * says which regions and bytes it holds, clicking zooms in down to one cell per region, live
 * changes and a session end ("map replaced") redraw it. The model's partitions (a GPT made by
 * sfdisk on a sparse 1 TiB file) show as a labelled band under the map, marks on the cells where
 * they begin, and in what pointing at a cell says. Screenshots go to docs/screenshots.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { FileDevice } from '../../appliance/storage/file-device.js';
import { readPartitionTable } from '../../appliance/storage/partition-table.js';
import { startHarness, type Harness, PASSWORD } from '../helpers/http-harness.js';
import { VIEWPORT_NAMES, newPage, shot, useChromium, waitData, waitText, setFirstPassword } from '../helpers/browser.js';

const N = 16 * 1024 * 1024;
const RED = [220, 38, 38];
const AMBER = [245, 158, 11];
const CLEAN = [203, 213, 225];
/** The mark on a cell where a partition begins (#17202c). */
const MARK = [23, 32, 44];
const GIB = 1024 ** 3;
/** The system partition ends (and the data partition begins) at 300 GiB: region 4,915,200. */
const DATA_START_REGION = (300 * GIB) / (64 * 1024);

/** A sparse 1 TiB model image with a GPT: ESP (512 MiB), system (to 300 GiB), data (the rest). */
function partitionedModel(dir: string): string {
  const path = join(dir, 'model.img');
  closeSync(openSync(path, 'w'));
  truncateSync(path, N * 64 * 1024);
  const sectors = (bytes: number): number => bytes / 512;
  const script = [
    'label: gpt',
    `start=2048, size=${sectors(512 * 1024 * 1024)}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="ESP"`,
    `start=${sectors(513 * 1024 * 1024)}, size=${sectors(300 * GIB - 513 * 1024 * 1024)}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="system"`,
    'type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="data"',
    '',
  ].join('\n');
  execFileSync('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', path], { input: script });
  return path;
}

/** The colour at the left edge of the cell holding region `r` (where a boundary mark is drawn). */
async function leftEdgeColourOf(page: Page, r: number): Promise<number[]> {
  return page.evaluate((r) => {
    const c = (globalThis as any).document.querySelector('#region-map');
    const d = c.dataset;
    const i = Math.floor((r - Number(d.viewStart)) / Number(d.perCell));
    const cell = Number(d.cell);
    const cols = Number(d.cols);
    const scale = c.width / c.clientWidth;
    const x = Math.floor((i % cols) * cell * scale);
    const y = Math.floor((Math.floor(i / cols) * cell + cell / 2) * scale);
    return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data as number[]).slice(0, 3);
  }, r);
}

async function bandLabels(page: Page): Promise<string[]> {
  return page.locator('#partition-band .part-seg').allTextContents();
}

/** Where region `r` is drawn, in CSS pixels of the canvas, or null when it is not in view. */
async function cellOf(page: Page, r: number): Promise<{ x: number; y: number } | null> {
  return page.evaluate((r) => {
    const c = (globalThis as any).document.querySelector('#region-map');
    const d = c.dataset;
    const start = Number(d.viewStart);
    if (r < start || r >= Number(d.viewEnd)) return null;
    const i = Math.floor((r - start) / Number(d.perCell));
    const cell = Number(d.cell);
    const cols = Number(d.cols);
    return { x: (i % cols) * cell + Math.max(1, Math.floor(cell / 2) - 1), y: Math.floor(i / cols) * cell + Math.max(1, Math.floor(cell / 2) - 1) };
  }, r);
}

/** The colour drawn for region `r`. */
async function colourOf(page: Page, r: number): Promise<number[]> {
  const at = await cellOf(page, r);
  assert.ok(at, `region ${r} is not in view`);
  return page.evaluate(({ x, y }) => {
    const c = (globalThis as any).document.querySelector('#region-map');
    const scale = c.width / c.clientWidth;
    return Array.from(c.getContext('2d').getImageData(Math.floor(x * scale), Math.floor(y * scale), 1, 1).data as number[]).slice(0, 3);
  }, at);
}

async function waitColour(page: Page, r: number, want: number[]): Promise<void> {
  const until = Date.now() + 15_000;
  let last: number[] = [];
  while (Date.now() < until) {
    last = await colourOf(page, r);
    if (last.join() === want.join()) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.fail(`region ${r} is drawn ${last.join(',')}, expected ${want.join(',')}`);
}

async function canvasData(page: Page, key: string): Promise<string> {
  return page.evaluate((key) => String((globalThis as any).document.querySelector('#region-map').dataset[key] ?? ''), key);
}

describe('web UI: the region map of a 16 M-region (1 TiB) disk in Chromium', function () {
  this.timeout(300_000);
  const chromium = useChromium();
  let dir: string;
  let model: FileDevice;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-map-parts-'));
    model = new FileDevice(partitionedModel(dir), { readOnly: true, batchedIo: null });
    await model.open();
  });
  after(async () => {
    await model?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const vp of VIEWPORT_NAMES) {
    it(`draws every changed region among 16 M, tells what a cell holds and zooms to single regions (${vp})`, async () => {
      const hx: Harness = await startHarness({ fake: { regions: N, regionSize: 64 * 1024 }, partitions: () => readPartitionTable(model) });
      const { page, problems, context } = await newPage(chromium.browser, vp);
      try {
        const fake = hx.service;
        // pending: 1000 regions early on and one far out; written: single regions here and there
        const pendingRegions = [...Array.from({ length: 1000 }, (_v, i) => 1000 + i), 12_000_000];
        fake.write(pendingRegions);
        await fake.endSession('api');
        const writtenRegions = [5, 8_000_000, 8_000_001, N - 1];
        fake.write(writtenRegions);

        await page.goto(hx.url + '/');
        await setFirstPassword(page, PASSWORD);
        await waitData(page, '#region-map', 'regions', String(N));
        await waitData(page, '#region-map', 'written', '4');
        await waitData(page, '#region-map', 'pending', '1001');
        const perCell = Number(await canvasData(page, 'perCell'));
        assert.ok(perCell > 100, `one cell stands for ${perCell} regions`);
        await waitText(page, '#map-range', 'Whole disk: 16,777,216 regions');
        await waitText(page, '#map-scale', `· one cell = ${perCell.toLocaleString('en-US')} regions of 64.0 KiB`);
        // one written region among hundreds colours its cell; pending ones too; the rest is clean
        await waitColour(page, 8_000_000, RED);
        await waitColour(page, N - 1, RED);
        await waitColour(page, 12_000_000, AMBER);
        await waitColour(page, 4_000_000, CLEAN);
        // the partitions: a labelled band under the map, and a mark where each begins
        await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#partition-band .part-seg').length === 3);
        assert.deepEqual(await bandLabels(page), ['1 ESP', '2 system', '3 data']);
        assert.match((await page.locator('#partition-band .part-seg[data-number="3"]').getAttribute('title'))!, /^Partition 3 "data" \(Microsoft basic data\): [\d.]+ GiB from byte 322,122,547,200$/);
        assert.ok((await page.locator('#partition-band .part-seg[data-number="3"]').boundingBox())!.width > 100, 'the data partition takes most of the band');
        // where ESP, system and data begin, and where data ends (sfdisk ends it on a MiB boundary
        // before the backup GPT)
        await waitData(page, '#region-map', 'boundaryMarks', '4');
        assert.deepEqual(await leftEdgeColourOf(page, DATA_START_REGION), MARK);
        await page.locator('#region-map').scrollIntoViewIfNeeded();
        await shot(page, vp, 'region-map-1tib');

        // point at the cell holding region 8,000,000: which regions, which bytes, what they hold
        const at = (await cellOf(page, 8_000_000))!;
        await page.hover('#region-map', { position: at });
        await waitText(page, '#map-inspect', /^Regions [\d,]+–[\d,]+: [\d.]+ MiB from byte [\d,]+ \([\d.]+ GiB\): 2 written this session, [\d,]+ clean · partition 3 "data" \(Microsoft basic data\)$/);

        // click to zoom in, on the same region each time, down to one cell of 8 px or more per region
        for (let step = 0; step < 8 && ((await canvasData(page, 'perCell')) !== '1' || Number(await canvasData(page, 'cell')) < 8); step++) {
          const before = Number(await canvasData(page, 'viewEnd')) - Number(await canvasData(page, 'viewStart'));
          await page.click('#region-map', { position: (await cellOf(page, 8_000_000))! });
          await page.waitForFunction((b: number) => {
            const d = (globalThis as any).document.querySelector('#region-map').dataset;
            return Number(d.viewEnd) - Number(d.viewStart) < b;
          }, before);
          // the live texts above the map may re-wrap (phone) and move it under the pointer
          // between aiming and clicking: then the zoom landed next door; step back and aim again
          if ((await cellOf(page, 8_000_000)) === null) {
            await page.click('#map-zoom-out');
            // the span is back to what it was (start and end are read together, once redrawn)
            await page.waitForFunction((b: number) => {
              const d = (globalThis as any).document.querySelector('#region-map').dataset;
              return Number(d.viewEnd) - Number(d.viewStart) === b;
            }, before);
          }
        }
        assert.equal(await canvasData(page, 'perCell'), '1');
        const start = Number(await canvasData(page, 'viewStart'));
        const end = Number(await canvasData(page, 'viewEnd'));
        assert.ok(start <= 8_000_000 && 8_000_001 < end, `view ${start}–${end}`);
        await waitText(page, '#map-range', new RegExp(`^Regions ${start.toLocaleString('en-US')}–${(end - 1).toLocaleString('en-US')} of 16,777,216 \\(`));
        await waitColour(page, 8_000_000, RED);
        await waitColour(page, 8_000_001, RED);
        await waitColour(page, 8_000_002, CLEAN);
        await page.hover('#region-map', { position: (await cellOf(page, 8_000_001))! });
        await waitText(page, '#map-inspect', /^Region 8,000,001: 64\.0 KiB from byte 524,288,065,536 \(488 GiB\): 1 written this session · partition 3 "data" \(Microsoft basic data\)$/);

        // zoomed inside the data partition: the band shows it alone, across the whole view
        assert.deepEqual(await bandLabels(page), ['3 data']);
        await waitData(page, '#region-map', 'boundaryMarks', '0');

        // a live change shows at once, in the zoomed view; the band, whose view did not change,
        // keeps its segments (their titles are tooltips: a status tick must not replace them)
        const segment = await page.locator('#partition-band .part-seg[data-number="3"]').elementHandle();
        fake.write([8_000_002]);
        await waitColour(page, 8_000_002, RED);
        await waitData(page, '#region-map', 'written', '5');
        assert.equal(await segment!.evaluate((el) => (el as any).isConnected), true, 'the band was rebuilt by a status change');
        await shot(page, vp, 'region-map-1tib-zoomed');

        // back to the whole disk; a session end replaces the map (written regions become pending)
        await page.click('#map-whole');
        await waitText(page, '#map-range', 'Whole disk: 16,777,216 regions');
        assert.equal(await canvasData(page, 'perCell'), String(perCell));
        await fake.endSession('api');
        await waitData(page, '#region-map', 'written', '0');
        await waitData(page, '#region-map', 'pending', String(1001 + 5));
        await waitColour(page, 8_000_000, AMBER);
        assert.deepEqual(problems, []);
      } finally {
        await context.close();
        await hx.close();
      }
    });
  }
});
