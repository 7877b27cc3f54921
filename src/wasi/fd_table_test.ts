import { describe, expect, it } from "vitest";
import { CrvmFd } from "./fd.ts";
import { FdTable } from "./fd_table.ts";

class Probe extends CrvmFd {
  readonly kind = "probe";
  closed = 0;
  override fd_close(): number {
    this.closed++;
    return 0;
  }
}

describe("FdTable", () => {
  it("reuses the lowest free number, as POSIX does", () => {
    const t = new FdTable();
    const a = new Probe(), b = new Probe(), c = new Probe();
    expect([t.add(a), t.add(b), t.add(c)]).toEqual([0, 1, 2]);
    t.close(1);
    expect(t.add(new Probe())).toBe(1);
    expect(t.add(new Probe())).toBe(3);
  });

  it("closes a shared object only when its last fd goes", () => {
    const t = new FdTable();
    const a = new Probe();
    t.add(a);
    t.add(a, 5);
    t.close(0);
    expect(a.closed).toBe(0);
    t.close(5);
    expect(a.closed).toBe(1);
    expect(t.close(5)).toBe(8); // EBADF
  });

  it("renumbers onto an open fd, closing what was there", () => {
    const t = new FdTable();
    const a = new Probe(), b = new Probe();
    t.add(a);
    t.add(b);
    expect(t.renumber(0, 1)).toBe(0);
    expect(t.get(1)).toBe(a);
    expect(t.get(0)).toBeUndefined();
    expect(b.closed).toBe(1);
    expect(a.closed).toBe(0);
  });
});

describe("FdTable.clone (fork)", () => {
  it("shares open files: the object closes only when both tables let go", () => {
    const a = new FdTable();
    const obj = new Probe();
    a.add(obj, 4);
    const b = a.clone();
    expect(b.get(4)).toBe(obj);
    a.close(4);
    expect(obj.closed).toBe(0);
    b.closeAll();
    expect(obj.closed).toBe(1);
  });

  it("finds the lowest free fd at or above a minimum (F_DUPFD)", () => {
    const t = new FdTable();
    const o = new Probe();
    t.add(o);
    t.add(o, 5);
    expect(t.add(o, undefined, 3)).toBe(3);
    expect(t.add(o, undefined, 5)).toBe(6);
  });
});
