#!/usr/bin/env node
/**
 * The `snapback` command line. Commands that work on a state directory take --state-dir DIR
 * (or SNAPBACK_STATE_DIR). A bad argument prints one clear line and exits 2; a failed
 * operation exits 1; `verify` exits 1 when it finds a difference the write log does not cover.
 */
import { SnapbackError } from '../errors.js';
import { runCommand, USAGE } from './commands.js';
async function main(argv) {
    const [cmd, ...rest] = argv;
    if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
        process.stdout.write(USAGE);
        return cmd ? 0 : 2;
    }
    return runCommand(cmd, rest);
}
main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
}, (err) => {
    if (err instanceof SnapbackError) {
        process.stderr.write(`snapback: ${err.message}\n`);
        process.exitCode = err.code === 'BAD_ARGUMENT' ? 2 : 1;
    }
    else if (err && typeof err === 'object' && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) {
        process.stderr.write(`snapback: ${err.message}\n`);
        process.exitCode = 2;
    }
    else {
        process.stderr.write(`snapback: unexpected error: ${err?.stack ?? String(err)}\n`);
        process.exitCode = 1;
    }
});
//# sourceMappingURL=main.js.map