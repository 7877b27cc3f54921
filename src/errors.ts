/**
 * Every problem crvm reports to its user (not to a guest) is a `CrvmError`:
 * its message names the thing and the reason, in one line.
 *
 * @example
 * throw new SnapshotError(`Cannot restore snapshot "a1b2": module hash differs`);
 */
export class CrvmError extends Error {
  override name = "CrvmError";
}
/** A command line or request that cannot be understood. */
export class UsageError extends CrvmError {
  override name = "UsageError";
}
/** A module crvm cannot load, validate or instrument. */
export class ModuleError extends CrvmError {
  override name = "ModuleError";
}
/** A snapshot that cannot be written, read or restored. */
export class SnapshotError extends CrvmError {
  override name = "SnapshotError";
}
/** A guest that failed in a way that is not its exit code (a trap, a stack overflow). */
export class GuestError extends CrvmError {
  override name = "GuestError";
}
