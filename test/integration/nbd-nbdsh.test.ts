/**
 * The NBD server driven from nbdsh (libnbd's Python shell): pipelined aio requests, FUA and
 * NO_HOLE reaching the device, and every error reply (out of range, over the maximum block
 * size, unknown flag, write to a read-only export) with the connection usable afterwards, with
 * structured and with simple replies.
 */
import assert from 'node:assert/strict';
import { nbdsh, startServer, type ServerFixture } from '../helpers/nbd-clients.js';
import { ForwardingDevice } from '../helpers/forwarding-device.js';

const SIZE = 8 * 1024 * 1024;
const MAX_BLOCK = 1024 * 1024;

/** Python: connect `h` to URI, optionally without structured replies, with client checks off. */
function prelude(uri: string, structured = true): string {
  return `
import nbd, os, json
h.set_request_structured_replies(${structured ? 'True' : 'False'})
h.connect_uri(${JSON.stringify(uri)})
assert h.get_structured_replies_negotiated() == ${structured ? 'True' : 'False'}
h.set_strict_mode(0)  # let libnbd send what the server must refuse
def errnum(fn):
    try:
        fn()
    except nbd.Error as e:
        return e.errnum
    return 0
`;
}

describe('NBD server: nbdsh (libnbd)', function () {
  let fx: ServerFixture;
  let rec: ForwardingDevice;

  before(async function () {
    fx = await startServer({
      size: SIZE,
      maxBlockSize: MAX_BLOCK,
      wrapDevice: (d) => {
        rec = new ForwardingDevice(d);
        rec.hook = () => new Promise((r) => setTimeout(r, 1)); // a little latency, so requests overlap
        return rec;
      },
    });
  });
  after(async function () {
    await fx?.stop();
  });

  it('serves pipelined aio writes, reads and flushes, many in flight at once', async function () {
    rec.reset();
    const out = await nbdsh(`${prelude(fx.uri)}
N = 128
bs = 4096
data = [os.urandom(bs) for i in range(N)]
wc = [h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data[i])), (i * 7919 % 2048) * bs) for i in range(N)]
peak = h.aio_in_flight()
while h.aio_in_flight() > 0:
    h.poll(-1)
assert all(h.aio_command_completed(c) for c in wc)
fc = h.aio_flush()
bufs = [nbd.Buffer(bs) for i in range(N)]
rc = [h.aio_pread(bufs[i], (i * 7919 % 2048) * bs) for i in range(N)]
peak = max(peak, h.aio_in_flight())
while h.aio_in_flight() > 0:
    h.poll(-1)
assert h.aio_command_completed(fc)
assert all(h.aio_command_completed(c) for c in rc)
bad = [i for i in range(N) if bytes(bufs[i].to_bytearray()) != data[i]]
assert not bad, bad
h.shutdown()
print(json.dumps({"peak": peak}))
`);
    const { peak } = JSON.parse(out) as { peak: number };
    assert.ok(peak > 1, `client had ${peak} requests in flight`);
    assert.ok(rec.maxPending > 1, `device saw at most ${rec.maxPending} requests at once`);
    assert.equal(rec.calls.filter((c) => c.op === 'write').length, 128);
    assert.equal(rec.calls.filter((c) => c.op === 'flush').length, 1);
    // The flush was sent after every write was answered: the device had finished all of them.
    assert.deepEqual(rec.writesDoneAtFlush, [128]);
  });

  it('passes FUA and NO_HOLE to the device', async function () {
    rec.reset();
    await nbdsh(`${prelude(fx.uri)}
h.pwrite(b"a" * 4096, 0, nbd.CMD_FLAG_FUA)
h.pwrite(b"b" * 4096, 4096)
h.zero(65536, 65536, nbd.CMD_FLAG_NO_HOLE)
h.zero(65536, 131072, nbd.CMD_FLAG_FUA)
h.trim(4096, 4096, nbd.CMD_FLAG_FUA)
h.flush()
assert h.pread(4096, 0) == b"a" * 4096
assert h.pread(65536, 65536) == bytes(65536)
h.shutdown()
`);
    const ops = rec.calls.filter((c) => c.op !== 'read').map((c) => [c.op, c.offset, c.length, c.options ?? {}]);
    assert.deepEqual(ops, [
      ['write', 0, 4096, { fua: true }],
      ['write', 4096, 4096, {}],
      ['zero', 65536, 65536, { noHole: true }],
      ['zero', 131072, 65536, { fua: true }],
      ['trim', 4096, 4096, { fua: true }],
      ['flush', 0, 0, {}],
    ]);
  });

  for (const structured of [true, false]) {
    it(`answers every refused request with its error and stays usable (${structured ? 'structured' : 'simple'} replies)`, async function () {
      const out = await nbdsh(`${prelude(fx.uri, structured)}
size = h.get_size()
ok = os.urandom(4096)
h.pwrite(ok, 8192)
results = {}
def check(name, fn):
    results[name] = errnum(fn)
    assert h.pread(4096, 8192) == ok, name + ": connection no longer usable"
check("read_past_end", lambda: h.pread(4096, size - 512))
check("read_offset_far", lambda: h.pread(512, 1 << 62))
check("write_past_end", lambda: h.pwrite(b"x" * 4096, size - 512))
check("trim_past_end", lambda: h.trim(4096, size))
check("zero_past_end", lambda: h.zero(8192, size - 4096))
check("read_over_max", lambda: h.pread(${MAX_BLOCK} + 4096, 0))
check("write_over_max", lambda: h.pwrite(b"y" * (${MAX_BLOCK} + 4096), 0))
check("unknown_flag", lambda: h.pread(4096, 0, 1 << 9))
check("no_hole_on_write", lambda: h.pwrite(b"z" * 512, 0, nbd.CMD_FLAG_NO_HOLE))
assert h.pread(${MAX_BLOCK}, 0)[:4] != b"yyyy", "the over-long write was not applied"
h.shutdown()
print(json.dumps(results))
`);
      assert.deepEqual(JSON.parse(out), {
        read_past_end: 22, // EINVAL
        read_offset_far: 22,
        write_past_end: 28, // ENOSPC (proto.md: writes past the end)
        trim_past_end: 22,
        zero_past_end: 28,
        read_over_max: 22,
        write_over_max: 22,
        unknown_flag: 22,
        no_hole_on_write: 22,
      });
    });
  }
});

describe('NBD server: nbdsh against a read-only export', function () {
  let fx: ServerFixture;

  before(async function () {
    fx = await startServer({ size: SIZE, readOnly: true });
  });
  after(async function () {
    await fx?.stop();
  });

  it('refuses writes, trims and zeroes with EPERM and still serves reads', async function () {
    const out = await nbdsh(`${prelude(fx.uri)}
assert h.is_read_only()
before = h.pread(4096, 0)
r = {
  "write": errnum(lambda: h.pwrite(b"w" * 4096, 0)),
  "trim": errnum(lambda: h.trim(4096, 0)),
  "zero": errnum(lambda: h.zero(4096, 0)),
  "flush": errnum(lambda: h.flush()),
}
assert h.pread(4096, 0) == before
h.shutdown()
print(json.dumps(r))
`);
    assert.deepEqual(JSON.parse(out), { write: 1, trim: 1, zero: 1, flush: 0 });
  });
});
