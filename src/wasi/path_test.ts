import { describe, expect, it } from "vitest";
import { wasi } from "./fd.ts";
import { parsePath, walkPath, type NodeType, type PathWalker } from "./path.ts";

describe("parsePath", () => {
  it("splits into components, drops '.', keeps '..'", () => {
    expect(parsePath("a/./b/../c")).toEqual({ ret: 0, path: { parts: ["a", "b", "..", "c"], mustBeDir: false } });
    expect(parsePath("a//b///")).toEqual({ ret: 0, path: { parts: ["a", "b"], mustBeDir: true } });
    expect(parsePath("a/.")).toEqual({ ret: 0, path: { parts: ["a"], mustBeDir: true } });
    expect(parsePath(".")).toEqual({ ret: 0, path: { parts: [], mustBeDir: true } });
    expect(parsePath("..")).toEqual({ ret: 0, path: { parts: [".."], mustBeDir: false } });
  });

  it("rejects NUL, empty, absolute and over-long names", () => {
    expect(parsePath("a\0b").ret).toBe(wasi.ERRNO_INVAL);
    expect(parsePath("").ret).toBe(wasi.ERRNO_NOENT);
    expect(parsePath("/etc/passwd").ret).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(parsePath("x".repeat(255)).ret).toBe(0);
    expect(parsePath("x".repeat(256)).ret).toBe(wasi.ERRNO_NAMETOOLONG);
    expect(parsePath("é".repeat(127)).ret).toBe(0); // 254 bytes
    expect(parsePath("é".repeat(128)).ret).toBe(wasi.ERRNO_NAMETOOLONG); // 256 bytes in 128 units
  });
});

/** A toy tree: keys are paths from the root ("" is the root), values their type and link target. */
function tree(entries: Record<string, { type: NodeType; target?: string }>): PathWalker<string> {
  const join = (d: string, n: string) => (d === "" ? n : `${d}/${n}`);
  return {
    lookup(dir, name) {
      const p = join(dir, name);
      const e = entries[p];
      return e ? { ret: 0, node: p, type: e.type } : { ret: 0, node: null, type: null };
    },
    parent(dir) {
      if (dir === "") return { ret: wasi.ERRNO_NOTCAPABLE, node: null };
      const i = dir.lastIndexOf("/");
      return { ret: 0, node: i < 0 ? "" : dir.slice(0, i) };
    },
    readlink(link) {
      return { ret: 0, target: entries[link]!.target! };
    },
  };
}

const walk = (w: PathWalker<string>, path: string, follow = true, start = "") =>
  walkPath(w, start, parsePath(path).path!, follow);

describe("walkPath", () => {
  const w = tree({
    d: { type: "dir" },
    "d/e": { type: "dir" },
    "d/f": { type: "file" },
    "d/e/g": { type: "file" },
    ln: { type: "symlink", target: "d/e" },
    lnf: { type: "symlink", target: "d/f" },
    up: { type: "symlink", target: ".." },
    abs: { type: "symlink", target: "/etc" },
    dot: { type: "symlink", target: "." },
    slash: { type: "symlink", target: "d/f/" },
    "d/e/back": { type: "symlink", target: "../f" },
    loop: { type: "symlink", target: "loop" },
    dangling: { type: "symlink", target: "d/new" },
  });

  it("resolves entries to (dir, name, node)", () => {
    expect(walk(w, "d/e/g")).toEqual({ ret: 0, dir: "d/e", name: "g", node: "d/e/g", type: "file" });
    expect(walk(w, "d/missing")).toEqual({ ret: 0, dir: "d", name: "missing", node: null, type: null });
    expect(walk(w, "d/missing/x").ret).toBe(wasi.ERRNO_NOENT);
    expect(walk(w, "d/f/x").ret).toBe(wasi.ERRNO_NOTDIR);
    expect(walk(w, "d/f/").ret).toBe(wasi.ERRNO_NOTDIR);
  });

  it("resolves '.' and '..' to a directory without a name", () => {
    expect(walk(w, ".")).toEqual({ ret: 0, dir: null, name: null, node: "", type: "dir" });
    expect(walk(w, "d/e/..")).toEqual({ ret: 0, dir: null, name: null, node: "d", type: "dir" });
    expect(walk(w, "..", true, "d")).toEqual({ ret: 0, dir: null, name: null, node: "", type: "dir" });
    expect(walk(w, "..").ret).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(walk(w, "d/../../x").ret).toBe(wasi.ERRNO_NOTCAPABLE);
  });

  it("follows symlinks in the middle always, at the end only when asked", () => {
    expect(walk(w, "ln/g").node).toBe("d/e/g");
    expect(walk(w, "ln", false)).toEqual({ ret: 0, dir: "", name: "ln", node: "ln", type: "symlink" });
    expect(walk(w, "ln", true).node).toBe("d/e");
    expect(walk(w, "ln/..").node).toBe("d"); // ".." applies to the link's target
    expect(walk(w, "d/e/back").node).toBe("d/f"); // relative to the link's directory
    expect(walk(w, "dot").node).toBe("");
    expect(walk(w, "dangling")).toEqual({ ret: 0, dir: "d", name: "new", node: null, type: null });
  });

  it("refuses escapes and loops through symlinks", () => {
    expect(walk(w, "up/x").ret).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(walk(w, "abs").ret).toBe(wasi.ERRNO_NOTCAPABLE);
    expect(walk(w, "abs", false).ret).toBe(0); // not followed: the link itself
    expect(walk(w, "loop").ret).toBe(wasi.ERRNO_LOOP);
    expect(walk(w, "loop", false).ret).toBe(0);
  });

  it("applies trailing slashes, also from a link's target", () => {
    expect(walk(w, "lnf", true).node).toBe("d/f");
    expect(walk(w, "slash", true).ret).toBe(wasi.ERRNO_NOTDIR);
    expect(walk(w, "ln/", false).ret).toBe(wasi.ERRNO_NOTDIR); // an unfollowed link is not a directory
  });
});
