/**
 * Where a thread's CPU went, as text: the top functions by self time of V8 `.cpuprofile` files (from
 * `node --cpu-prof`, one file per thread: `bench:api-bus -- --server-cpu-prof <dir>` writes the API's
 * request thread and its publisher thread apart), and the self time grouped by where the code lives
 * (this project, amqplib, other packages, Node's own JavaScript, and V8's pseudo-frames: GC, program =
 * native code outside JavaScript such as syscalls, idle).
 *
 *   npm run profile:summary -- <file.cpuprofile | dir>… [--top 25] [--areas 15] [--per <n> --per-label event]
 *
 * With `--per n`, each figure is also given in µs per unit (e.g. the events the profiled run emitted),
 * so a profile says where each event's CPU goes. Profiles are sampled (1 kHz by default): a function
 * below a few samples is noise.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Where code lives, by its URL. */
function areaOf(url: string, functionName: string): string {
  if (url === '') {
    if (functionName === '(garbage collector)') return 'V8: garbage collector';
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(program)') return 'V8: (program): native, outside JS';
    return `native: ${functionName}`;
  }
  if (url.startsWith('node:')) return 'Node internals (node:*)';
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const rest = url.slice(modules + '/node_modules/'.length).split('/');
    return `package: ${rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  const src = url.indexOf('/src/');
  if (src >= 0) return `project: ${url.slice(src + 1)}`;
  return url;
}

function summarise(
  file: string,
  top: number,
  areasShown: number,
  per: number | undefined,
  perLabel: string,
): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time before sample i; the sample's node ran for the next delta.
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    const delta = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, delta));
  }
  const functions = new Map<string, { us: number; area: string }>();
  const areas = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const frame = (byId.get(id) as ProfileNode).callFrame;
    const area = areaOf(frame.url, frame.functionName);
    if (area === 'idle') {
      idle += us;
      continue;
    }
    total += us;
    const location = frame.url === '' ? '' : ` ${path.basename(frame.url)}:${frame.lineNumber + 1}`;
    const key = `${frame.functionName || '(anonymous)'}${location}`;
    const entry = functions.get(key) ?? { us: 0, area };
    entry.us += us;
    functions.set(key, entry);
    areas.set(area, (areas.get(area) ?? 0) + us);
  }
  const wallUs = profile.endTime - profile.startTime;
  const perText = (us: number) =>
    per === undefined ? '' : ` ${(us / per).toFixed(2).padStart(8)} µs/${perLabel}`;
  const line = (us: number, name: string) =>
    `${(us / 1000).toFixed(1).padStart(9)} ms ${((100 * us) / total).toFixed(1).padStart(5)} %${perText(us)}  ${name}`;
  const out = [
    `# ${path.basename(file)}`,
    `wall ${(wallUs / 1e6).toFixed(1)} s, busy (not idle) ${(total / 1000).toFixed(0)} ms = ${((100 * total) / wallUs).toFixed(1)} % of one core, idle ${(idle / 1000).toFixed(0)} ms${per === undefined ? '' : `; per ${perLabel}: ${(total / per).toFixed(1)} µs (${per} ${perLabel})`}`,
    '',
    'Self time by where the code lives:',
    ...[...areas]
      .sort((a, b) => b[1] - a[1])
      .slice(0, areasShown)
      .map(([area, us]) => line(us, area)),
    '',
    `Top ${top} functions by self time:`,
    ...[...functions]
      .sort((a, b) => b[1].us - a[1].us)
      .slice(0, top)
      .map(([name, { us, area }]) => line(us, `${name}  [${area}]`)),
    '',
  ];
  return out.join('\n');
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: 'string', default: '25' },
    areas: { type: 'string', default: '15' },
    per: { type: 'string' },
    'per-label': { type: 'string', default: 'event' },
  },
});
const files = positionals.flatMap((entry) =>
  statSync(entry).isDirectory()
    ? readdirSync(entry)
        .filter((name) => name.endsWith('.cpuprofile'))
        .sort()
        .map((name) => path.join(entry, name))
    : [entry],
);
if (files.length === 0) {
  process.stderr.write('usage: npm run profile:summary -- <file.cpuprofile | dir>… [--top n] [--per n]\n');
  process.exit(2);
}
for (const file of files) {
  process.stdout.write(
    `${summarise(file, Number(values.top), Number(values.areas), values.per === undefined ? undefined : Number(values.per), values['per-label'])}\n`,
  );
}
