/**
 * The UDC state policy on recorded and reconstructed traces (test/fixtures/udc-traces/): which
 * transitions end a host session, and that a host that only sleeps keeps its session.
 */
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UdcPolicySchema, UdcStatePolicy, hostLinkOf } from '../../appliance/gadget/udc-policy.js';
const here = path.dirname(fileURLToPath(import.meta.url));
// dist/test/unit → the repository's test/fixtures (JSON is not copied into dist).
const TRACES = path.resolve(here, '..', '..', '..', 'test', 'fixtures', 'udc-traces');
/** Replays a trace the way the watcher reads the state file: every pollIntervalMs, plus each change. */
function replay(trace, policyInput) {
    const policy = UdcPolicySchema.parse(policyInput);
    const p = new UdcStatePolicy(policy);
    const ends = [];
    const decisions = [];
    const take = (ds, afterStep) => {
        for (const d of ds) {
            decisions.push(d);
            if (d.kind === 'end-session')
                ends.push({ afterStep, cause: d.cause, note: d.note });
        }
    };
    trace.steps.forEach((s, i) => {
        take(p.observe(s.state, s.t), i);
        const next = trace.steps[i + 1];
        const until = next ? next.t : s.t + 60_000; // after the last step: a minute of quiet
        for (let t = s.t + policy.pollIntervalMs; t < until; t += policy.pollIntervalMs)
            take(p.tick(t), i);
    });
    return { ends, decisions };
}
const files = readdirSync(TRACES).filter((f) => f.endsWith('.json')).sort();
describe('gadget: UDC state policy on traces', function () {
    it('has traces of both kinds: recorded under dummy_hcd and a Pi\'s dwc2 sequences', function () {
        assert.ok(files.some((f) => f.startsWith('dummy-hcd-')), 'no dummy_hcd traces');
        assert.ok(files.filter((f) => f.startsWith('pi-dwc2-')).length >= 5, 'too few dwc2 traces');
        const all = files.map((f) => JSON.parse(readFileSync(path.join(TRACES, f), 'utf8')));
        const states = new Set(all.flatMap((t) => t.steps.map((s) => s.state)));
        for (const s of ['not attached', 'default', 'addressed', 'configured', 'suspended'])
            assert.ok(states.has(s), `no trace shows "${s}"`);
    });
    for (const f of files) {
        const trace = JSON.parse(readFileSync(path.join(TRACES, f), 'utf8'));
        describe(`${f}: ${trace.name}`, function () {
            for (const exp of trace.expect) {
                const label = Object.keys(exp.policy).length === 0 ? 'default policy' : JSON.stringify(exp.policy);
                const want = exp.ends.length === 0 ? 'keeps the session' : `ends it ${exp.ends.map((e) => `after step ${e.afterStep} (${e.cause})`).join(', ')}`;
                it(`${label}: ${want}`, function () {
                    const { ends, decisions } = replay(trace, exp.policy);
                    assert.deepEqual(ends.map((e) => ({ afterStep: e.afterStep, cause: e.cause })), exp.ends, `decisions: ${decisions.filter((d) => d.kind !== 'connection').map((d) => JSON.stringify(d)).join('\n')}`);
                    // Every change of state is reported as a transition (the session history records each).
                    const changes = trace.steps.filter((s, i) => i === 0 || s.state !== trace.steps[i - 1].state).length;
                    assert.equal(decisions.filter((d) => d.kind === 'transition').length, changes);
                });
            }
        });
    }
});
describe('gadget: UDC state policy', function () {
    const policy = UdcPolicySchema.parse({});
    it('maps UDC states to host connection states', function () {
        assert.equal(hostLinkOf('not attached'), 'absent');
        assert.equal(hostLinkOf(null), 'absent');
        assert.equal(hostLinkOf('default'), 'attached');
        assert.equal(hostLinkOf('addressed'), 'attached');
        assert.equal(hostLinkOf('powered'), 'attached');
        assert.equal(hostLinkOf('configured'), 'configured');
        assert.equal(hostLinkOf('suspended'), 'suspended');
    });
    it('does not end a session for its own rebind (watchdog), and ends the next real one', function () {
        const p = new UdcStatePolicy(policy);
        p.observe('configured', 0);
        p.expectOwnReenumeration(30_000);
        const own = [...p.observe('default', 1000), ...p.observe('configured', 1200)];
        assert.ok(!own.some((d) => d.kind === 'end-session'));
        assert.ok(own.some((d) => d.kind === 'kept' && d.note.includes('appliance itself')));
        const real = p.observe('default', 5000);
        assert.ok(real.some((d) => d.kind === 'end-session' && d.cause === 'reenumeration'));
    });
    it('after its own bind, a stale "configured" does not hide the enumeration that follows', function () {
        // The daemon restarted: dummy_hcd still shows the old binding's "configured" when the
        // watcher first reads, then the host enumerates the new binding.
        const p = new UdcStatePolicy(policy);
        p.expectOwnReenumeration(30_000);
        const ds = [...p.observe('configured', 0), ...p.observe('default', 100), ...p.observe('configured', 900)];
        assert.ok(!ds.some((d) => d.kind === 'end-session'), JSON.stringify(ds));
        assert.ok(p.observe('default', 5000).some((d) => d.kind === 'end-session'), 'the next one is the host\'s');
    });
    it('a first reading is a baseline: a gadget found configured has a host, nothing ends', function () {
        const p = new UdcStatePolicy(policy);
        const first = p.observe('configured', 0);
        assert.deepEqual(first.map((d) => d.kind), ['transition', 'connection']);
        assert.ok(p.observe('default', 10).some((d) => d.kind === 'end-session'));
    });
    it('ends a session once per host event, not again while the host enumerates', function () {
        const p = new UdcStatePolicy(policy);
        p.observe('configured', 0);
        const ds = [...p.observe('default', 100), ...p.observe('addressed', 150), ...p.observe('default', 160), ...p.observe('configured', 300)];
        assert.equal(ds.filter((d) => d.kind === 'end-session').length, 1);
    });
    it('rejects a policy that is not one (clear errors, no half-valid settings)', function () {
        assert.throws(() => UdcPolicySchema.parse({ pollIntervalMs: 0 }));
        assert.throws(() => UdcPolicySchema.parse({ endOnResetAfterSuspendSeconds: -1 }));
        assert.throws(() => UdcPolicySchema.parse({ endOnDisconect: true }), /Unrecognized key/);
    });
});
//# sourceMappingURL=gadget-udc-traces.test.js.map