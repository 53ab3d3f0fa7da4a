// Unit tests of the pure modules (protocol codec, flow control): compiled with tsc into
// .unit-out/ and run with node's test runner. No browser needed.
import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');
rmSync(join(web, '.unit-out'), { recursive: true, force: true });
execFileSync(process.execPath, [join(web, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.test.json'], {
  cwd: web,
  stdio: 'inherit',
});
const dir = join(web, '.unit-out/test');
const files = readdirSync(dir).filter((f) => f.endsWith('.test.js')).map((f) => join(dir, f));
execFileSync(process.execPath, ['--test', ...files], { cwd: web, stdio: 'inherit' });
