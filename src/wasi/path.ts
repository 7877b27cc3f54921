// Guest path parsing and the one symlink-aware path walk shared by the
// in-memory fs (`memfs.ts`) and host directories (`hostfs.ts`). Both resolve
// every component themselves so that `..` and symlinks can never leave the
// preopen: the rules live here once instead of twice.
import { wasi } from "./fd.ts";

/** Linux's limit on symlinks followed in one lookup (MAXSYMLINKS). */
export const MAX_SYMLINK_HOPS = 40;
/** Linux's NAME_MAX, in bytes. */
export const NAME_MAX = 255;

/** A guest path split into components. `.` is dropped, `..` is kept (it must be resolved after symlinks). */
export interface ParsedPath {
  parts: string[];
  /** The path ended in `/` or `/.`: the result must be a directory (POSIX trailing-slash rule). */
  mustBeDir: boolean;
}

const encoder = new TextEncoder();

/**
 * Parse a path received from the guest.
 * Errors: NUL byte → EINVAL, empty → ENOENT, absolute → ENOTCAPABLE (WASI
 * paths are relative to a directory fd; wasmtime answers EPERM or
 * ENOTCAPABLE here, we always answer ENOTCAPABLE), a component over 255
 * bytes → ENAMETOOLONG.
 *
 * @example
 * parsePath("a/./b/../c/") // { ret: 0, path: { parts: ["a", "b", "..", "c"], mustBeDir: true } }
 */
export function parsePath(path: string): { ret: number; path: ParsedPath | null } {
  if (path.includes("\0")) return { ret: wasi.ERRNO_INVAL, path: null };
  if (path === "") return { ret: wasi.ERRNO_NOENT, path: null };
  if (path.startsWith("/")) return { ret: wasi.ERRNO_NOTCAPABLE, path: null };
  return splitComponents(path);
}

/** Split a relative path (a guest path or a symlink's target) into components. */
function splitComponents(path: string): { ret: number; path: ParsedPath | null } {
  const raw = path.split("/");
  const parts: string[] = [];
  for (const c of raw) {
    if (c === "" || c === ".") continue;
    // Cheap length test first: a UTF-16 unit encodes to at most 3 bytes.
    if (c.length * 3 > NAME_MAX && encoder.encode(c).length > NAME_MAX) {
      return { ret: wasi.ERRNO_NAMETOOLONG, path: null };
    }
    parts.push(c);
  }
  const lastRaw = raw[raw.length - 1];
  return { ret: wasi.ERRNO_SUCCESS, path: { parts, mustBeDir: lastRaw === "" || lastRaw === "." } };
}

/** What a directory entry is, as far as path walking cares ("other": a device, fifo or socket). */
export type NodeType = "dir" | "symlink" | "file" | "other";

/**
 * The few operations a path walk needs from a filesystem. `N` names a node
 * (an inode object in memfs, a path relative to the preopen in hostfs).
 */
export interface PathWalker<N> {
  /** Look `name` up in directory `dir` without following a symlink. A missing entry is `node: null` with ret 0. */
  lookup(dir: N, name: string): { ret: number; node: N | null; type: NodeType | null };
  /** The parent of directory `dir`; ret ENOTCAPABLE at the sandbox root. */
  parent(dir: N): { ret: number; node: N | null };
  /** The contents of symlink `link`. */
  readlink(link: N): { ret: number; target: string };
}

/**
 * Result of a walk. When the path names an entry, `dir` is the directory that
 * holds it and `name` its name there; `node` is null if the entry does not
 * exist (a create can make it). When the path ends in `..` or names the start
 * directory itself (`.`), `dir` and `name` are null and `node` is that
 * directory.
 */
export interface WalkResult<N> {
  ret: number;
  dir: N | null;
  name: string | null;
  node: N | null;
  type: NodeType | null;
}

const fail = <N>(ret: number): WalkResult<N> => ({ ret, dir: null, name: null, node: null, type: null });

/**
 * Resolve `path` from directory `start`. Symlinks in the middle are always
 * followed; the last component is followed only if `followLast`. A symlink
 * target is resolved from the directory holding the link; an absolute target
 * is refused (ENOTCAPABLE) because it would name the host's root. `..` asks
 * the walker for the parent, which refuses to leave the sandbox root. More
 * than 40 symlinks → ELOOP. A trailing slash makes a non-directory result
 * ENOTDIR (a symlink at the end with `followLast` false counts as a
 * non-directory, like Linux's rmdir("link/")).
 *
 * @example
 * const r = walkPath(dirFd, dirFd.dir, parsed, true);
 * if (r.ret !== 0) return r.ret;
 * if (r.node === null) createIn(r.dir!, r.name!);
 */
export function walkPath<N>(w: PathWalker<N>, start: N, path: ParsedPath, followLast: boolean): WalkResult<N> {
  // Components still to resolve, last one at index 0 (so pop() takes the next one).
  const todo = path.parts.slice().reverse();
  let mustBeDir = path.mustBeDir;
  let cur = start;
  let hops = 0;
  while (todo.length > 0) {
    const name = todo.pop()!;
    const last = todo.length === 0;
    if (name === "..") {
      const p = w.parent(cur);
      if (p.ret !== 0) return fail(p.ret);
      cur = p.node!;
      continue;
    }
    const r = w.lookup(cur, name);
    if (r.ret !== 0) return fail(r.ret);
    if (r.node === null) {
      if (!last) return fail(wasi.ERRNO_NOENT);
      return { ret: 0, dir: cur, name, node: null, type: null };
    }
    if (r.type === "symlink" && (!last || followLast)) {
      if (++hops > MAX_SYMLINK_HOPS) return fail(wasi.ERRNO_LOOP);
      const l = w.readlink(r.node);
      if (l.ret !== 0) return fail(l.ret);
      if (l.target === "") return fail(wasi.ERRNO_NOENT);
      if (l.target.startsWith("/")) return fail(wasi.ERRNO_NOTCAPABLE);
      const t = splitComponents(l.target);
      if (t.ret !== 0) return fail(t.ret);
      if (last && t.path!.mustBeDir) mustBeDir = true;
      for (let i = t.path!.parts.length - 1; i >= 0; i--) todo.push(t.path!.parts[i]!);
      continue;
    }
    if (!last) {
      if (r.type !== "dir") return fail(wasi.ERRNO_NOTDIR);
      cur = r.node;
      continue;
    }
    if (mustBeDir && r.type !== "dir") return fail(wasi.ERRNO_NOTDIR);
    return { ret: 0, dir: cur, name, node: r.node, type: r.type };
  }
  // Ended on `..`, or on a symlink whose target had no components left: the
  // result is a directory without a (parent, name) pair.
  return { ret: 0, dir: null, name: null, node: cur, type: "dir" };
}

/**
 * Parses `path` and resolves it from `start`. `followLast`: follow a final
 * symlink (a trailing slash follows it too), or "never" for calls that act on
 * the last component itself.
 */
export function resolvePath<N>(
  w: PathWalker<N>,
  start: N,
  path: string,
  followLast: boolean | "never",
): { r: WalkResult<N>; mustBeDir: boolean } {
  const p = parsePath(path);
  if (p.path === null) return { r: { ret: p.ret, dir: null, name: null, node: null, type: null }, mustBeDir: false };
  const follow = followLast === "never" ? false : followLast || p.path.mustBeDir;
  return { r: walkPath(w, start, p.path, follow), mustBeDir: p.path.mustBeDir };
}
