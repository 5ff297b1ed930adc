/**
 * Dashboard: host connection, session, modes, region counts, bytes changed, restore progress,
 * the live region map with the model's partitions over it, disk and SD card health, and the
 * disk-changing actions.
 */
import { getJson, getRegionMap } from '../api.js';
import { endSession, setMode } from '../actions.js';
import { fmtBytes, fmtDuration, fmtInt, fmtRate, fmtTime, h, pct, setText } from '../dom.js';
import { latestStatus, on, setStatus } from '../live.js';
import { RegionMap, ZOOM_STEP, decodeWireMap } from '../region-map.js';
import { partitionBoundaries, partitionsText, renderPartitionBand } from '../partition-band.js';
import type { ApplianceStatus } from '../../../appliance/api/status.js';
import type { PartitionTable } from '../../../appliance/api/partitions.js';
import type { Page } from './page.js';

const HOST_TEXT: Record<string, string> = {
  absent: 'No host',
  attached: 'Attached',
  configured: 'Connected',
  suspended: 'Suspended (host asleep)',
  'nbd-only': 'NBD client',
};

function stat(id: string, label: string, extraClass = ''): HTMLElement {
  return h('div', { class: `stat ${extraClass}` }, h('span', { class: 'stat-value', id }, '—'), h('span', { class: 'stat-label' }, label));
}

export const dashboardPage: Page = {
  title: 'Dashboard',
  render(root) {
    const endBtn = h('button', { type: 'button', class: 'btn btn-danger', id: 'btn-end-session' }, 'End session & restore now');
    const modeBtn = h('button', { type: 'button', class: 'btn', id: 'btn-toggle-mode' }, 'Thaw');
    const bar = h('progress', { id: 'hydration-bar', max: 100, value: 0 });
    const canvas = h('canvas', { id: 'region-map', role: 'img', 'aria-label': 'Region map' });
    const zoomOutBtn = h('button', { type: 'button', class: 'btn btn-small', id: 'map-zoom-out', title: `Show ${ZOOM_STEP}× more of the disk` }, 'Zoom out');
    const prevBtn = h('button', { type: 'button', class: 'btn btn-small', id: 'map-prev', 'aria-label': 'Earlier regions' }, '◀');
    const nextBtn = h('button', { type: 'button', class: 'btn btn-small', id: 'map-next', 'aria-label': 'Later regions' }, '▶');
    const wholeBtn = h('button', { type: 'button', class: 'btn btn-small', id: 'map-whole' }, 'Whole disk');
    root.append(
      h('div', { id: 'thawed-banner', class: 'banner banner-warn', hidden: true }, 'Thawed: what the host writes is kept. Freeze again when maintenance is done.'),
      h('div', { id: 'download-banner', class: 'banner banner-warn', role: 'status', hidden: true }),
      h('div', { id: 'pending-model-banner', class: 'banner banner-ok', role: 'status', hidden: true }),
      h(
        'div',
        { class: 'grid' },
        h(
          'section',
          { class: 'card' },
          h('h2', null, 'Host'),
          h('p', { class: 'big', id: 'host-state' }, '—'),
          h('p', { class: 'muted', id: 'host-detail' }),
        ),
        h(
          'section',
          { class: 'card' },
          h('h2', null, 'Session'),
          h('p', { class: 'big' }, '#', h('span', { id: 'session-number' }, '—')),
          h('p', null, 'Running for ', h('strong', { id: 'session-duration' }, '—'), h('span', { class: 'muted', id: 'session-started' })),
          h('p', { class: 'badges' }, h('span', { class: 'badge', id: 'mode' }, '—'), h('span', { class: 'badge', id: 'restore-mode' }, '—')),
        ),
        h(
          'section',
          { class: 'card' },
          h('h2', null, 'Regions'),
          h(
            'div',
            { class: 'stats' },
            stat('regions-written', 'written this session', 'written'),
            stat('regions-pending', 'pending restore', 'pending'),
            stat('regions-clean', 'clean', 'clean'),
          ),
          h('p', null, h('strong', { id: 'bytes-changed' }, '—'), ' changed this session'),
        ),
        h(
          'section',
          { class: 'card' },
          h('h2', null, 'Restore'),
          bar,
          h('p', { id: 'hydration-text' }, '—'),
          h('p', { class: 'muted' }, h('span', { id: 'hydration-rate' }), ' ', h('span', { id: 'hydration-eta' })),
        ),
        h(
          'section',
          { class: 'card' },
          h('h2', null, 'Health'),
          h('p', null, 'Working disk: ', h('span', { id: 'disk-health' }, '—')),
          h('p', { class: 'muted small', id: 'disk-path' }),
          h('p', null, 'SD card: ', h('span', { id: 'sd-health' }, '—')),
        ),
        h(
          'section',
          { class: 'card' },
          h('h2', null, 'Actions'),
          h('div', { class: 'actions' }, endBtn, modeBtn),
          h('p', { class: 'muted small' }, 'Both ask for confirmation first.'),
        ),
      ),
      h(
        'section',
        { class: 'card card-wide' },
        h('h2', null, 'Disk map'),
        h(
          'p',
          { class: 'legend' },
          h('span', { class: 'swatch swatch-written' }),
          ' written this session ',
          h('span', { class: 'swatch swatch-pending' }),
          ' pending restore ',
          h('span', { class: 'swatch swatch-clean' }),
          ' clean ',
          h('span', { class: 'muted', id: 'map-scale' }),
        ),
        h(
          'div',
          { class: 'map-controls' },
          zoomOutBtn,
          prevBtn,
          nextBtn,
          wholeBtn,
          h('span', { class: 'muted small', id: 'map-range' }),
        ),
        h('div', { class: 'map-wrap' }, canvas, h('div', { class: 'partition-band', id: 'partition-band', 'aria-label': 'Partitions' })),
        h('p', { class: 'muted small', id: 'map-inspect', 'aria-live': 'polite' }, 'Point at the map to see which regions a cell holds; click to zoom in.'),
      ),
    );

    const map = new RegionMap(canvas);
    // The active model's partitions (read again when the model changes).
    let partitions: PartitionTable | null = null;
    let partitionProblem: string | null = null;
    let partitionsOf: string | null = null;
    // What the partition band was last drawn from (from -1: not drawn yet).
    let bandShows: { table: PartitionTable | null; problem: string | null; from: number; to: number } = { table: null, problem: null, from: -1, to: -1 };
    const loadPartitions = (modelId: string): void => {
      partitionsOf = modelId;
      getJson<PartitionTable>('/api/partitions')
        .then((t) => {
          partitions = t;
          partitionProblem = null;
        })
        .catch((err: unknown) => {
          partitions = null;
          partitionProblem = err instanceof Error ? err.message : String(err);
        })
        .finally(() => {
          map.boundaries = partitions ? partitionBoundaries(partitions, map.regionSize) : [];
          map.schedule();
        });
    };
    let status: ApplianceStatus | null = latestStatus;
    let loading: Promise<void> | null = null;
    let reloadAgain = false;
    let buffered: [number, number, number][] | null = [];

    // Deltas that arrive while the map loads are kept and applied after it, in order.
    const loadMap = (): void => {
      if (loading) {
        reloadAgain = true;
        return;
      }
      buffered = [];
      loading = getRegionMap()
        .then((m) => {
          map.setMap(decodeWireMap(m));
          map.apply(buffered ?? []);
        })
        .catch(() => undefined)
        .finally(() => {
          buffered = null;
          loading = null;
          if (reloadAgain) {
            reloadAgain = false;
            loadMap();
          }
        });
    };

    const render = (): void => {
      const s = status;
      if (!s) return;
      const q = <T extends HTMLElement>(id: string): T | null => root.querySelector<T>(`#${id}`);
      setText(q('host-state'), HOST_TEXT[s.host.connection] ?? s.host.connection);
      q('host-state')?.setAttribute('data-state', s.host.connection);
      const g = s.host.gadget;
      setText(
        q('host-detail'),
        [
          `${s.host.nbdClients} NBD client${s.host.nbdClients === 1 ? '' : 's'}`,
          g ? `USB ${g.udcState ?? 'unknown'}, medium ${g.medium}` : 'no USB gadget',
          g?.lastError ? `gadget error: ${g.lastError}` : '',
        ]
          .filter(Boolean)
          .join(' · '),
      );
      setText(q('session-number'), String(s.session.number));
      setText(q('session-started'), ` (since ${fmtTime(s.session.startedAt)})`);
      setText(q('session-duration'), fmtDuration(Math.max(0, Math.floor((Date.now() - Date.parse(s.session.startedAt)) / 1000)) * 1000, true));
      const mode = q('mode');
      setText(mode, s.mode === 'frozen' ? 'Frozen' : 'Thawed');
      mode?.setAttribute('data-mode', s.mode);
      setText(q('restore-mode'), s.restoreMode === 'instant' ? 'Instant restore' : 'Eager restore');
      const banner = q('thawed-banner');
      if (banner) banner.hidden = s.mode !== 'thawed';
      // a model still arriving from its URL that cannot move: "model download stalled (…): why"
      const stalled = s.components.find((c) => c.name === 'model-download' && c.problem)?.problem ?? null;
      const dl = q('download-banner');
      if (dl) dl.hidden = stalled === null;
      setText(dl, stalled ? `${stalled.charAt(0).toUpperCase()}${stalled.slice(1)}. It resumes by itself when the server answers again; reads of regions not here yet fail until then.` : '');
      // an activation waiting for the next session end
      const next = s.model.pendingActivation;
      const pendingBanner = q('pending-model-banner');
      if (pendingBanner) pendingBanner.hidden = !next;
      setText(pendingBanner, next ? `Model ${next.name} will be active after the next session end (the host's next power cycle, or End session); the Models page can cancel it.` : '');
      setText(q('regions-written'), fmtInt(s.regions.writtenThisSession));
      setText(q('regions-pending'), fmtInt(s.regions.pending));
      setText(q('regions-clean'), fmtInt(s.regions.clean));
      setText(q('bytes-changed'), fmtBytes(s.bytesChangedThisSession));

      const hy = s.hydration;
      // Restoring while regions are pending (a restore may still be "running" for a moment
      // after the last region, paying off its rate limit).
      const restoring = hy.running && hy.pendingRegions > 0;
      const p = hy.pendingRegions > 0 ? pct(hy.done, hy.done + hy.pendingRegions) : 100;
      bar.value = Math.round(p * 10) / 10;
      bar.dataset.state = restoring ? 'running' : hy.pendingRegions > 0 ? 'waiting' : 'done';
      setText(
        q('hydration-text'),
        restoring
          ? `Restoring: ${fmtInt(hy.done)} of ${fmtInt(hy.done + hy.pendingRegions)} regions (${p.toFixed(1)} %)`
          : hy.pendingRegions > 0
            ? `${fmtInt(hy.pendingRegions)} regions wait to be restored`
            : 'Nothing to restore: the disk matches the model outside this session',
      );
      setText(q('hydration-rate'), restoring ? `${fmtRate(hy.bytesPerSecond)} (limit ${fmtRate(hy.rateLimitBytesPerSecond)})` : `Limit ${fmtRate(hy.rateLimitBytesPerSecond)}`);
      setText(q('hydration-eta'), restoring && hy.etaSeconds !== null ? `· ${fmtDuration(Math.ceil(hy.etaSeconds) * 1000, true)} left` : '');

      const diskEl = q('disk-health');
      setText(diskEl, `${fmtBytes(s.disk.size)}, ${s.disk.ioErrors === 0 ? 'no I/O errors' : `${fmtInt(s.disk.ioErrors)} I/O errors`}`);
      diskEl?.classList.toggle('bad', s.disk.ioErrors > 0);
      setText(q('disk-path'), s.disk.path);
      const sdEl = q('sd-health');
      setText(sdEl, s.stateDir.freeBytes === null ? 'free space unknown' : `${fmtBytes(s.stateDir.freeBytes)} free`);
      sdEl?.classList.toggle('bad', s.stateDir.freeBytes !== null && s.stateDir.freeBytes < 256 * 1024 * 1024);

      modeBtn.textContent = s.mode === 'frozen' ? 'Thaw' : 'Freeze';
      modeBtn.dataset.target = s.mode === 'frozen' ? 'thawed' : 'frozen';
      endBtn.textContent = s.mode === 'frozen' ? 'End session & restore now' : 'End session';
      if (map.size !== s.regions.total && !loading) loadMap();
      map.regionSize = s.regions.regionSize;
      if (partitionsOf !== s.model.id) loadPartitions(s.model.id);
      mapTexts();
    };

    // The zoom controls, the scale and the range in view follow every draw.
    const mapTexts = (): void => {
      const rs = map.regionSize;
      const l = map.layout;
      const v = map.view;
      setText(root.querySelector('#map-scale'), l.perCell > 1 ? `· one cell = ${fmtInt(l.perCell)} regions of ${fmtBytes(rs)}` : `· one cell = one region of ${fmtBytes(rs)}`);
      setText(
        root.querySelector('#map-range'),
        v.whole
          ? `Whole disk: ${fmtInt(map.size)} regions`
          : `Regions ${fmtInt(v.start)}–${fmtInt(v.end - 1)} of ${fmtInt(map.size)} (${fmtBytes(v.start * rs)} to ${fmtBytes(v.end * rs)})`,
      );
      const band = root.querySelector<HTMLElement>('#partition-band');
      if (band) {
        band.style.width = canvas.style.width;
        // Rebuilt only when what it shows changes: a status tick must not replace the segments
        // under the pointer (their titles are the tooltips).
        const from = v.start * rs;
        const to = v.end * rs;
        if (partitions !== bandShows.table || partitionProblem !== bandShows.problem || from !== bandShows.from || to !== bandShows.to) {
          bandShows = { table: partitions, problem: partitionProblem, from, to };
          renderPartitionBand(band, partitions, partitionProblem, from, to);
        }
      }
      zoomOutBtn.disabled = v.whole;
      wholeBtn.disabled = v.whole;
      prevBtn.disabled = v.start === 0;
      nextBtn.disabled = v.end >= map.size;
      canvas.style.cursor = v.end - v.start > map.minSpan ? 'zoom-in' : 'default';
    };
    map.onDraw = mapTexts;
    const inspectText = (c: number | null): string => {
      if (c === null) return 'Point at the map to see which regions a cell holds; click to zoom in.';
      const i = map.cellInfo(c);
      const rs = map.regionSize;
      const what = [i.written ? `${fmtInt(i.written)} written this session` : '', i.pending ? `${fmtInt(i.pending)} pending restore` : '', i.clean ? `${fmtInt(i.clean)} clean` : '']
        .filter(Boolean)
        .join(', ');
      const regions = i.first === i.last ? `Region ${fmtInt(i.first)}` : `Regions ${fmtInt(i.first)}–${fmtInt(i.last)}`;
      return `${regions}: ${fmtBytes((i.last + 1 - i.first) * rs)} from byte ${fmtInt(i.first * rs)} (${fmtBytes(i.first * rs)}): ${what}${partitionsText(partitions, i.first * rs, (i.last + 1) * rs)}`;
    };
    const pointAt = (ev: MouseEvent): number | null => {
      const box = canvas.getBoundingClientRect();
      return map.cellAt(ev.clientX - box.left, ev.clientY - box.top);
    };
    canvas.addEventListener('mousemove', (ev) => setText(root.querySelector('#map-inspect'), inspectText(pointAt(ev))));
    canvas.addEventListener('mouseleave', () => setText(root.querySelector('#map-inspect'), inspectText(null)));
    canvas.addEventListener('click', (ev) => {
      const c = pointAt(ev);
      if (c === null) return;
      const i = map.cellInfo(c);
      map.zoomIn((i.first + i.last + 1) / 2);
      setText(root.querySelector('#map-inspect'), inspectText(null));
    });
    zoomOutBtn.addEventListener('click', () => map.zoomOut());
    prevBtn.addEventListener('click', () => map.pan(-1));
    nextBtn.addEventListener('click', () => map.pan(1));
    wholeBtn.addEventListener('click', () => map.showWhole());

    endBtn.addEventListener('click', () => {
      endBtn.disabled = true;
      void endSession(status).finally(() => {
        endBtn.disabled = false;
      });
    });
    modeBtn.addEventListener('click', () => {
      const target = modeBtn.dataset.target === 'frozen' ? 'frozen' : 'thawed';
      modeBtn.disabled = true;
      void setMode(target).finally(() => {
        modeBtn.disabled = false;
      });
    });

    const offs = [
      on<ApplianceStatus>('status', (s) => {
        status = s;
        render();
      }),
      on<{ runs?: [number, number, number][]; replaced?: boolean }>('regions', (d) => {
        if (d.replaced) return loadMap();
        if (!d.runs) return;
        if (buffered) for (const r of d.runs) buffered.push(r);
        else map.apply(d.runs);
      }),
      on('session-ended', () => loadMap()),
      on<boolean>('connection', (up) => {
        if (up) loadMap();
      }),
    ];
    const tick = setInterval(render, 1000);
    loadMap();
    if (!status) {
      void getJson<ApplianceStatus>('/api/status').then(setStatus, () => undefined);
    } else render();
    return () => {
      for (const off of offs) off();
      clearInterval(tick);
      map.destroy();
    };
  },
};
