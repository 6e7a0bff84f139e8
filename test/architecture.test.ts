/**
 * The import graph, checked on every run: `protocol/` at the ground, `coordinator/` and
 * `worker-sdk/` above it and unaware of each other, `cli/` on top; no cycle between files
 * (type-only imports count: a cycle of types is a cycle of design); and a core that imports
 * nothing with side effects. A small scanner instead of a tool such as madge keeps the rule
 * next to the layout it guards and needs no dependency; it reads `import … from`,
 * `export … from` and `import('…')` specifiers, which is all this code base uses.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Each package's source folder and the @lockq packages its source may import. */
const PACKAGES = {
  protocol: { src: 'protocol/src', mayImport: [] },
  'worker-sdk': { src: 'worker-sdk/src', mayImport: ['protocol'] },
  coordinator: { src: 'coordinator/src', mayImport: ['protocol'] },
  cli: { src: 'cli/src', mayImport: ['protocol', 'worker-sdk', 'coordinator'] },
} as const satisfies Record<string, { src: string; mayImport: readonly string[] }>;
type PackageName = keyof typeof PACKAGES;

/** The core is a pure reducer: no Node built-ins, no drivers, no logger, nothing from the runtime. */
const CORE = 'coordinator/src/core';

interface SourceFile {
  readonly path: string; // relative to ROOT
  readonly pkg: PackageName;
  readonly specifiers: readonly string[];
}

const SPECIFIER = /(?:^|[\s;])(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s+['"]([^'"]+)['"]/gm;

function tsFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return tsFiles(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

function scan(): SourceFile[] {
  return Object.entries(PACKAGES).flatMap(([pkg, { src }]) =>
    tsFiles(src).map((path) => {
      const text = readFileSync(join(ROOT, path), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, '');
      const specifiers = [...text.matchAll(SPECIFIER)].map((m) => (m[1] ?? m[2] ?? m[3]) as string);
      return { path, pkg: pkg as PackageName, specifiers };
    }),
  );
}

/** `@lockq/protocol/amqp` → its entry file; a relative `./x.js` → `x.ts` beside the importer. */
function resolveSpecifier(from: string, specifier: string): string | undefined {
  if (specifier.startsWith('.')) return relative(ROOT, resolve(ROOT, dirname(from), specifier.replace(/\.js$/, '.ts')));
  const m = /^@lockq\/([^/]+)(?:\/(.+))?$/.exec(specifier);
  if (m === null) return undefined;
  const pkg = PACKAGES[m[1] as PackageName];
  if (pkg === undefined) return undefined;
  return m[2] === undefined ? `${pkg.src}/index.ts` : m[2] === 'protocol' ? `${pkg.src}/protocol.ts` : `${pkg.src}/${m[2]}/index.ts`;
}

/** Strongly connected components with more than one file, or a file importing itself (Tarjan). */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

const files = scan();

describe('the import graph', () => {
  it('finds the sources it guards (the scanner is not blind)', () => {
    const byPkg = (p: PackageName) => files.filter((f) => f.pkg === p);
    for (const p of Object.keys(PACKAGES) as PackageName[]) expect(byPkg(p).length, p).toBeGreaterThan(0);
    const sdkIndex = files.find((f) => f.path === 'worker-sdk/src/index.ts');
    expect(sdkIndex?.specifiers.length).toBeGreaterThan(0);
  });

  it('has each package import only the @lockq packages beneath it (the coordinator never the SDK)', () => {
    const violations = files.flatMap((f) =>
      f.specifiers
        .filter((s) => s.startsWith('@lockq/'))
        .map((s) => s.split('/')[1] as string)
        .filter((target) => !(PACKAGES[f.pkg].mayImport as readonly string[]).includes(target))
        .map((target) => `${f.path} imports @lockq/${target}`),
    );
    expect(violations).toEqual([]);
  });

  it('has no relative import that leaves its package', () => {
    const violations = files.flatMap((f) =>
      f.specifiers
        .filter((s) => s.startsWith('.'))
        .filter((s) => !resolveSpecifier(f.path, s)!.startsWith(`${PACKAGES[f.pkg].src}/`))
        .map((s) => `${f.path} imports ${s}`),
    );
    expect(violations).toEqual([]);
  });

  it('has no import cycle between files, type-only imports included', () => {
    const known = new Set(files.map((f) => f.path));
    const graph = new Map(
      files.map((f) => [
        f.path,
        f.specifiers.map((s) => resolveSpecifier(f.path, s)).filter((t): t is string => t !== undefined && known.has(t)),
      ]),
    );
    expect(cycles(graph)).toEqual([]);
  });

  it('keeps the core pure: no Node built-ins, drivers, logger, or code from outside the core but the protocol', () => {
    const violations = files
      .filter((f) => f.path.startsWith(`${CORE}/`))
      .flatMap((f) =>
        f.specifiers
          .filter((s) => (s.startsWith('.') ? !resolveSpecifier(f.path, s)!.startsWith(`${CORE}/`) : s !== '@lockq/protocol'))
          .map((s) => `${f.path} imports ${s}`),
      );
    expect(violations).toEqual([]);
  });
});

describe('the cycle finder', () => {
  it('reports a two-file cycle and a self-import, and nothing in a chain', () => {
    const g = new Map<string, string[]>([
      ['a', ['b']],
      ['b', ['a', 'c']],
      ['c', ['d']],
      ['d', []],
      ['e', ['e']],
    ]);
    expect(cycles(g)).toEqual([['a', 'b'], ['e']]);
  });
});
