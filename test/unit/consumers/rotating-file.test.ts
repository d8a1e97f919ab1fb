/**
 * The size-rotated log file on a real file system: the rename chain, the limit (no file past it, no line
 * split), how many copies are kept, a restart over an existing file, an oversized line, and a rotation
 * that fails without losing lines.
 */
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { RotatingFile, rotatedPath } from '../../../src/consumers/logging/rotating-file.ts';

const root = mkdtempSync(join(tmpdir(), 'rotating-file-'));
after(() => rmSync(root, { recursive: true, force: true }));
let directories = 0;

function logPath(): string {
  return join(root, `case-${++directories}`, 'logs', 'errors.log');
}

/** A line of exactly `bytes` bytes (newline included), tagged with its number. */
function line(index: number, bytes = 30): string {
  const head = `line ${index} `;
  return `${head}${'x'.repeat(bytes - head.length - 1)}\n`;
}

function lines(path: string): string[] {
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean) : [];
}

/** Every line still on disk, oldest first. */
function allLines(file: RotatingFile): string[] {
  const result: string[] = [];
  for (let index = file.maxFiles; index >= 0; index--) result.push(...lines(rotatedPath(file.path, index)));
  return result;
}

describe('RotatingFile', () => {
  test('creates its directory and appends whole lines', () => {
    const path = logPath();
    const file = new RotatingFile({ path });
    after(() => file.close());
    file.write(line(1));
    file.write(Buffer.from(line(2)));
    assert.deepEqual(lines(path), [line(1).trimEnd(), line(2).trimEnd()]);
    assert.equal(file.size, 60);
    assert.equal(statSync(path).mode & 0o777, 0o640);
  });

  test('rotates before a line that would pass the limit: errors.log → errors.log.1, nothing over the limit', () => {
    const path = logPath();
    const file = new RotatingFile({ path, maxFileBytes: 100, maxFiles: 5 });
    after(() => file.close());
    for (let index = 1; index <= 3; index++) file.write(line(index));
    assert.equal(file.rotations, 0, '90 bytes fit in 100');
    file.write(line(4));
    assert.equal(file.rotations, 1);
    assert.deepEqual(
      lines(`${path}.1`),
      [1, 2, 3].map((index) => line(index).trimEnd()),
    );
    assert.deepEqual(lines(path), [line(4).trimEnd()]);
    assert.equal(statSync(`${path}.1`).size, 90);
  });

  test('keeps maxFiles rotated copies, the newest as .1, and drops the oldest', () => {
    const path = logPath();
    const file = new RotatingFile({ path, maxFileBytes: 100, maxFiles: 2 });
    after(() => file.close());
    for (let index = 1; index <= 20; index++) file.write(line(index));
    assert.deepEqual(readdirSync(join(path, '..')).sort(), ['errors.log', 'errors.log.1', 'errors.log.2']);
    for (const name of ['errors.log', 'errors.log.1', 'errors.log.2']) {
      const size = statSync(join(path, '..', name)).size;
      assert.ok(size <= 100, `${name} is ${size} bytes`);
      assert.equal(size % 30, 0, `${name} holds whole lines`);
    }
    // 20 lines, 3 per file: the last 20 - 18 = 2 are active, and 6 more in the two copies, in order.
    assert.deepEqual(
      allLines(file),
      [13, 14, 15, 16, 17, 18, 19, 20].map((index) => line(index).trimEnd()),
    );
  });

  test('a restart counts what the file already holds', () => {
    const path = logPath();
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, line(1) + line(2) + line(3));
    const file = new RotatingFile({ path, maxFileBytes: 100, maxFiles: 1 });
    after(() => file.close());
    assert.equal(file.size, 90);
    file.write(line(4));
    assert.equal(file.rotations, 1);
    assert.deepEqual(lines(`${path}.1`).length, 3);
    assert.deepEqual(lines(path), [line(4).trimEnd()]);
  });

  test('a line larger than the limit gets a file of its own', () => {
    const path = logPath();
    const file = new RotatingFile({ path, maxFileBytes: 100, maxFiles: 3 });
    after(() => file.close());
    file.write(line(1));
    file.write(line(2, 250));
    file.write(line(3));
    assert.deepEqual(
      allLines(file),
      [line(1), line(2, 250), line(3)].map((text) => text.trimEnd()),
    );
    assert.equal(statSync(`${path}.1`).size, 250);
    assert.equal(file.rotations, 2);
  });

  test('maxFiles 0 keeps no copy', () => {
    const path = logPath();
    const file = new RotatingFile({ path, maxFileBytes: 60, maxFiles: 0 });
    after(() => file.close());
    for (let index = 1; index <= 5; index++) file.write(line(index));
    assert.deepEqual(readdirSync(join(path, '..')), ['errors.log']);
    assert.deepEqual(lines(path), [line(5).trimEnd()]);
  });

  test('a failed rotation loses no line: it is reported, and the line goes to the active file', () => {
    const path = logPath();
    // A non-empty directory where errors.log.1 should go: the rename fails.
    mkdirSync(join(`${path}.1`, 'blocker'), { recursive: true });
    const failures: unknown[] = [];
    const file = new RotatingFile({
      path,
      maxFileBytes: 60,
      maxFiles: 1,
      onRotationError: (error) => failures.push(error),
    });
    after(() => file.close());
    for (let index = 1; index <= 3; index++) file.write(line(index));
    assert.equal(failures.length, 1);
    assert.deepEqual(
      lines(path),
      [1, 2, 3].map((index) => line(index).trimEnd()),
    );
    // Once the obstacle is gone, the next line rotates.
    rmSync(`${path}.1`, { recursive: true });
    file.write(line(4));
    assert.deepEqual(lines(`${path}.1`).length, 3);
    assert.deepEqual(lines(path), [line(4).trimEnd()]);
  });

  test('rejects limits that make no sense', () => {
    assert.throws(() => new RotatingFile({ path: logPath(), maxFileBytes: 0 }), RangeError);
    assert.throws(() => new RotatingFile({ path: logPath(), maxFiles: -1 }), RangeError);
    assert.throws(() => new RotatingFile({ path: logPath(), maxFiles: 1.5 }), RangeError);
  });
});
