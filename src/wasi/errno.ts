// POSIX error names (as carried by `HostFsError.code`) to WASI preview1
// errnos. WASI's errno list is POSIX's, so the table is mostly the same
// name without the E; the aliases (EWOULDBLOCK, EOPNOTSUPP, EDEADLOCK) and
// Windows/libuv extras are mapped by hand.
import { HostFsError } from "../host/types.ts";
import { wasi } from "./fd.ts";

const CODES: Record<string, number> = {
  E2BIG: wasi.ERRNO_2BIG,
  EACCES: wasi.ERRNO_ACCES,
  EADDRINUSE: wasi.ERRNO_ADDRINUSE,
  EADDRNOTAVAIL: wasi.ERRNO_ADDRNOTAVAIL,
  EAFNOSUPPORT: wasi.ERRNO_AFNOSUPPORT,
  EAGAIN: wasi.ERRNO_AGAIN,
  EWOULDBLOCK: wasi.ERRNO_AGAIN,
  EALREADY: wasi.ERRNO_ALREADY,
  EBADF: wasi.ERRNO_BADF,
  EBADMSG: wasi.ERRNO_BADMSG,
  EBUSY: wasi.ERRNO_BUSY,
  ECANCELED: wasi.ERRNO_CANCELED,
  ECHILD: wasi.ERRNO_CHILD,
  ECONNABORTED: wasi.ERRNO_CONNABORTED,
  ECONNREFUSED: wasi.ERRNO_CONNREFUSED,
  ECONNRESET: wasi.ERRNO_CONNRESET,
  EDEADLK: wasi.ERRNO_DEADLK,
  EDEADLOCK: wasi.ERRNO_DEADLK,
  EDESTADDRREQ: wasi.ERRNO_DESTADDRREQ,
  EDOM: wasi.ERRNO_DOM,
  EDQUOT: wasi.ERRNO_DQUOT,
  EEXIST: wasi.ERRNO_EXIST,
  EFAULT: wasi.ERRNO_FAULT,
  EFBIG: wasi.ERRNO_FBIG,
  EHOSTUNREACH: wasi.ERRNO_HOSTUNREACH,
  EIDRM: wasi.ERRNO_IDRM,
  EILSEQ: wasi.ERRNO_ILSEQ,
  EINPROGRESS: wasi.ERRNO_INPROGRESS,
  EINTR: wasi.ERRNO_INTR,
  EINVAL: wasi.ERRNO_INVAL,
  EIO: wasi.ERRNO_IO,
  EISCONN: wasi.ERRNO_ISCONN,
  EISDIR: wasi.ERRNO_ISDIR,
  ELOOP: wasi.ERRNO_LOOP,
  EMFILE: wasi.ERRNO_MFILE,
  EMLINK: wasi.ERRNO_MLINK,
  EMSGSIZE: wasi.ERRNO_MSGSIZE,
  EMULTIHOP: wasi.ERRNO_MULTIHOP,
  ENAMETOOLONG: wasi.ERRNO_NAMETOOLONG,
  ENETDOWN: wasi.ERRNO_NETDOWN,
  ENETRESET: wasi.ERRNO_NETRESET,
  ENETUNREACH: wasi.ERRNO_NETUNREACH,
  ENFILE: wasi.ERRNO_NFILE,
  ENOBUFS: wasi.ERRNO_NOBUFS,
  ENODEV: wasi.ERRNO_NODEV,
  ENOENT: wasi.ERRNO_NOENT,
  ENOEXEC: wasi.ERRNO_NOEXEC,
  ENOLCK: wasi.ERRNO_NOLCK,
  ENOLINK: wasi.ERRNO_NOLINK,
  ENOMEM: wasi.ERRNO_NOMEM,
  ENOMSG: wasi.ERRNO_NOMSG,
  ENOPROTOOPT: wasi.ERRNO_NOPROTOOPT,
  ENOSPC: wasi.ERRNO_NOSPC,
  ENOSYS: wasi.ERRNO_NOSYS,
  ENOTCONN: wasi.ERRNO_NOTCONN,
  ENOTDIR: wasi.ERRNO_NOTDIR,
  ENOTEMPTY: wasi.ERRNO_NOTEMPTY,
  ENOTRECOVERABLE: wasi.ERRNO_NOTRECOVERABLE,
  ENOTSOCK: wasi.ERRNO_NOTSOCK,
  ENOTSUP: wasi.ERRNO_NOTSUP,
  EOPNOTSUPP: wasi.ERRNO_NOTSUP,
  ENOTTY: wasi.ERRNO_NOTTY,
  ENXIO: wasi.ERRNO_NXIO,
  EOVERFLOW: wasi.ERRNO_OVERFLOW,
  EOWNERDEAD: wasi.ERRNO_OWNERDEAD,
  EPERM: wasi.ERRNO_PERM,
  EPIPE: wasi.ERRNO_PIPE,
  EPROTO: wasi.ERRNO_PROTO,
  EPROTONOSUPPORT: wasi.ERRNO_PROTONOSUPPORT,
  EPROTOTYPE: wasi.ERRNO_PROTOTYPE,
  ERANGE: wasi.ERRNO_RANGE,
  EROFS: wasi.ERRNO_ROFS,
  ESPIPE: wasi.ERRNO_SPIPE,
  ESRCH: wasi.ERRNO_SRCH,
  ESTALE: wasi.ERRNO_STALE,
  ETIMEDOUT: wasi.ERRNO_TIMEDOUT,
  ETXTBSY: wasi.ERRNO_TXTBSY,
  EXDEV: wasi.ERRNO_XDEV,
  // libuv on Windows reports a few conditions under its own names.
  EBADFD: wasi.ERRNO_BADF,
  ECHARSET: wasi.ERRNO_ILSEQ,
  EFTYPE: wasi.ERRNO_INVAL,
};

/**
 * The WASI errno for a failed host filesystem call. A `HostFsError` whose
 * code has no WASI equivalent becomes EIO (the guest sees an I/O error, as it
 * would from a kernel); anything that is not a `HostFsError` is a bug or a
 * host problem and is rethrown, never turned into an errno.
 *
 * @example
 * try { fs.unlink(p); } catch (e) { return errnoOf(e); }
 */
export function errnoOf(e: unknown): number {
  if (e instanceof HostFsError) return CODES[e.code] ?? wasi.ERRNO_IO;
  throw e;
}
