/**
 * A log file rotated by size, the classic way: when the next line would take `errors.log` past its limit,
 * `errors.log.<N-1>` becomes `errors.log.<N>` … `errors.log` becomes `errors.log.1`, and a new `errors.log`
 * is started; what would become `errors.log.<N+1>` is dropped. The active file keeps its name, so
 * `tail -F` and log shippers follow it across rotations.
 *
 * Writes are synchronous (`fs.writeSync`): when `write` returns, the line is in the file (the kernel's
 * page cache; a crash of the process loses nothing, a power cut may). That is what a consumer that logs
 * after its commit needs, and at error-log volumes the cost does not matter. A line is never split
 * across two files.
 *
 * One process per file: two processes rotating the same file would rename each other's files. Each
 * process has its own DATA_DIR, and so its own `<DATA_DIR>/logs`.
 */
import { closeSync, fstatSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export interface RotatingFileOptions {
  /** Path of the active file, e.g. `data/logs/errors.log`; rotated copies are `<path>.1` (newest) to `<path>.<maxFiles>`. */
  path: string;
  /**
   * Size of the active file at which it is rotated, in bytes: a line that would take it past this starts
   * a new file, so no file exceeds it (unless one line alone is larger: it then gets a file of its own).
   * @default {@link ROTATING_FILE_DEFAULTS}
   */
  maxFileBytes?: number;
  /** Rotated files kept besides the active one (`<path>.1` … `<path>.<maxFiles>`); 0 keeps none. @default {@link ROTATING_FILE_DEFAULTS} */
  maxFiles?: number;
  /** Permissions of a created file (log lines carry client addresses and user ids). @default 0o640 */
  mode?: number;
  /**
   * Called when a rotation fails (a rename refused): the line is written to the active file anyway, and
   * the next write tries to rotate again. @default ignore
   */
  onRotationError?: (error: unknown) => void;
}

export const ROTATING_FILE_DEFAULTS = {
  /** Size at which the file is rotated, in bytes: 10 MiB. */
  maxFileBytes: 10 * 1024 * 1024,
  /** Rotated files kept besides the active one. */
  maxFiles: 5,
} as const;

/** The file name of rotated copy `index` (0 is the active file). */
export function rotatedPath(path: string, index: number): string {
  return index === 0 ? path : `${path}.${index}`;
}

export class RotatingFile {
  readonly path: string;
  readonly maxFileBytes: number;
  readonly maxFiles: number;
  readonly #mode: number;
  readonly #onRotationError: (error: unknown) => void;
  #fd: number | undefined;
  #size = 0;
  /** Rotations done by this instance (for tests and metrics). */
  rotations = 0;

  constructor(options: RotatingFileOptions) {
    const maxFileBytes = options.maxFileBytes ?? ROTATING_FILE_DEFAULTS.maxFileBytes;
    const maxFiles = options.maxFiles ?? ROTATING_FILE_DEFAULTS.maxFiles;
    if (!Number.isSafeInteger(maxFileBytes) || maxFileBytes < 1) {
      throw new RangeError('maxFileBytes must be a positive integer');
    }
    if (!Number.isSafeInteger(maxFiles) || maxFiles < 0) {
      throw new RangeError('maxFiles must be a non-negative integer');
    }
    this.path = options.path;
    this.maxFileBytes = maxFileBytes;
    this.maxFiles = maxFiles;
    this.#mode = options.mode ?? 0o640;
    this.#onRotationError = options.onRotationError ?? (() => {});
    mkdirSync(dirname(this.path), { recursive: true });
    this.#open();
  }

  /** Bytes in the active file. */
  get size(): number {
    return this.#size;
  }

  /**
   * Appends `chunk` (one or more whole lines), rotating first if it would not fit. Throws if the file
   * cannot be written (disk full, permissions): the caller decides what a lost line means. A failed
   * rotation is not a lost line: it goes to `onRotationError`, and the line to the active file. Returns true,
   * as a stream's `write` does when the caller need not wait (pino takes this object as a destination).
   */
  write(chunk: string | Uint8Array): boolean {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    if (bytes.length === 0) return true;
    if (this.#size > 0 && this.#size + bytes.length > this.maxFileBytes) {
      try {
        this.rotate();
      } catch (error) {
        // A full log beats a lost line: keep appending, and try again at the next line.
        this.#onRotationError(error);
      }
    }
    const fd = this.#fd ?? this.#open();
    let offset = 0;
    while (offset < bytes.length) {
      const written = writeSync(fd, bytes, offset, bytes.length - offset);
      offset += written;
      this.#size += written;
    }
    return true;
  }

  /** Shifts every copy up by one (dropping the oldest) and starts an empty active file. Throws if a rename fails. */
  rotate(): void {
    this.#close();
    try {
      if (this.maxFiles === 0) {
        rmSync(this.path, { force: true });
      } else {
        for (let index = this.maxFiles - 1; index >= 0; index--) {
          renameIfExists(rotatedPath(this.path, index), rotatedPath(this.path, index + 1));
        }
      }
      this.rotations++;
    } finally {
      // Even after a failed rename, keep logging: to a new file, or the old one if it is still there.
      this.#open();
    }
  }

  close(): void {
    this.#close();
  }

  #open(): number {
    const fd = openSync(this.path, 'a', this.#mode);
    this.#fd = fd;
    this.#size = fstatSync(fd).size;
    return fd;
  }

  #close(): void {
    if (this.#fd === undefined) return;
    const fd = this.#fd;
    this.#fd = undefined;
    closeSync(fd);
  }
}

/** rename(2) replaces `to` atomically; a missing `from` (fewer copies than allowed so far) is fine. */
function renameIfExists(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
