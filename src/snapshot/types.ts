// The snapshot image as data: what the encoder writes and the decoder returns.
// Nothing here knows about the VM; `src/checkpoint/` maps VM objects to and
// from these records.

/** Version of the image format this code writes and reads. */
export const FORMAT_VERSION = 1;
export const PAGE_SIZE = 65536;

/** Header facts about how and when an image was made. */
export interface ImageMeta {
  crvmVersion: string;
  createdAt: string;
  /** Runtime and version that wrote the image, e.g. "node 20.20.2". */
  runtime: string;
  /** The VM's virtual monotonic clock at the checkpoint (ns, decimal string). */
  monotonicNs: string;
  /** Random 128-bit id of this image (32 hex digits). */
  id: string;
  /** For an incremental image: the image whose pages it does not repeat. */
  parent?: ParentRef;
}

/** How an incremental image names its parent: its id, its digest, and where it was (relative to this image's directory). */
export interface ParentRef {
  id: string;
  digest: string;
  path: string;
}

export interface ModuleEntry {
  id: number;
  name: string;
  sourceHash: string;
  wasmHash: string;
  passVersion: number;
  /** The module as the user gave it (the receiver re-instruments it and checks wasmHash). */
  source: Uint8Array;
  /** Named by a MODULE_REF record: the bytes are in the parent chain (empty until the chain is resolved). */
  inherited?: boolean;
}

/** A global's value: "num" for i32/f32/f64 (exact decimal, or NaN/Infinity/-Infinity/-0), "i64" as a decimal integer. */
export interface GlobalValue {
  type: "num" | "i64";
  value: string;
}

export interface MemoryRecord {
  /** Size of the memory in 64 KiB pages. */
  pages: number;
  /** Non-zero pages: [page index, content hash]. Pages not listed are zero. */
  map: [number, string][];
}

export interface PendingRecord {
  call: string;
  untilNs?: string;
  fds?: { fd: number; what: "read" | "write" }[];
  yield?: boolean;
  freeze?: boolean;
  /** Waiting in proc_join for this child pid, or any child (-1). */
  join?: number;
  state?: unknown;
}

/** A pipe's buffer; its ends are FileRecords of kind piperead/pipewrite. */
export interface PipeRecord {
  id: number;
  /** Blob id of the bytes written and not yet read, or null if empty. */
  data: number | null;
  capacity: number;
}

/** An exited task not joined yet. */
export interface ZombieRecord {
  pid: number;
  ppid: number;
  code: number;
  signal: number | null;
}

/** The files of a freezer group's directory in the cgroup filesystem. */
export type CgroupFileName = "cgroup.procs" | "cgroup.freeze" | "cgroup.events";

/** An open file description; fds refer to it by id so sharing survives. */
export type FileRecord =
  | { id: number; kind: "stdin"; buffered: number | null; eof: boolean }
  | { id: number; kind: "stdout" | "stderr" }
  | { id: number; kind: "mempreopen"; name: string; inode: number }
  | { id: number; kind: "memdir"; inode: number; root: number }
  | { id: number; kind: "memfile"; inode: number; pos: string; append: boolean; readable: boolean; writable: boolean; fdflags: number }
  | { id: number; kind: "hostpreopen"; guestPath: string; hostPath: string }
  | { id: number; kind: "piperead" | "pipewrite"; pipe: number; nonblock: boolean }
  | { id: number; kind: "hostdir"; preopen: number; rel: string }
  | { id: number; kind: "cgrouppreopen" }
  /** `group`: the group's path, or null for an fd whose group was removed (its calls fail). */
  | { id: number; kind: "cgroupdir"; group: string | null }
  | {
    id: number;
    kind: "cgroupfile";
    group: string | null;
    name: CgroupFileName;
    pos: string;
    readable: boolean;
    writable: boolean;
    fdflags: number;
    /** Blob id of the text a read generated, still being read (`pos` > 0); null: the next read generates it. */
    content: number | null;
  }
  | {
    id: number;
    kind: "hostfile";
    preopen: number;
    rel: string;
    pos: string;
    append: boolean;
    readable: boolean;
    writable: boolean;
    fdflags: number;
    size: string;
    mtimeNs: string;
    /**
     * The file a self-checkpoint was being written into: it grew by the
     * image after `size` was taken, so a restore checks nothing about its
     * size and moves `pos` by what it grew.
     */
    imageTarget?: true;
  };

/** Access, modification and change times, ns since the epoch as decimal strings. */
export type Times = [string, string, string];

/** An in-memory inode; `data` is a blob id (null for an empty file). */
export type InodeRecord =
  | { id: number; type: "file"; ino: string; data: number | null; size: number; nlink: number; times: Times }
  | {
    id: number;
    type: "dir";
    ino: string;
    /** [name, inode id, readdir cookie] in directory order. */
    entries: [string, number, string][];
    nextCookie: string;
    parent: number | null;
    removed: boolean;
    times: Times;
  }
  | { id: number; type: "symlink"; ino: string; target: string; nlink: number; times: Times };

export interface TaskRecord {
  pid: number;
  /** Parent pid; 0 for the VM's first task. */
  ppid: number;
  moduleId: number;
  args: string[];
  env: string[];
  memory: MemoryRecord;
  globals: [string, GlobalValue][];
  /** Blob id of the unwound Asyncify stack. */
  frames: number;
  pending: PendingRecord;
  fds: [number, number][];
  /** Stopped by SIGSTOP. */
  stopped?: boolean;
  /** Path of its freezer group ("/" when absent). */
  group?: string;
  /** Blob of the image bytes its pending crvm.checkpoint call had still to write. */
  unsent?: number;
}

/** A freezer group; `frozen` is its own freeze setting (cgroup.freeze). Parents come before children. */
export interface GroupRecord {
  path: string;
  frozen: boolean;
}

export interface VmRecord {
  nextPid: number;
  nextIno: string;
  inodes: InodeRecord[];
  files: FileRecord[];
  tasks: TaskRecord[];
  pipes?: PipeRecord[];
  zombies?: ZombieRecord[];
  /** --max-tasks of the VM. */
  maxTasks?: number;
  /** --max-memory of the VM, in 64 KiB pages. */
  maxMemoryPages?: number;
  /** Freezer groups, "/" first (absent: only "/", thawed). */
  groups?: GroupRecord[];
  /**
   * How the image was taken: the group its tasks were frozen in (a restore
   * thaws it) and, for a self-checkpoint, the caller (which resumes in its
   * checkpoint call with id 0, and thaws the group itself).
   */
  checkpoint?: { group: string; caller?: number };
  /** The id the next guest checkpoint in this VM gets. */
  nextCheckpointId?: number;
}

/** A whole image. Pages are content-addressed by their hex hash. */
export interface SnapshotImage {
  meta: ImageMeta;
  modules: ModuleEntry[];
  /** Pages stored in this image (and, once a chain is resolved, those inherited from its parents). */
  pages: Map<string, Uint8Array>;
  blobs: Map<number, Uint8Array>;
  vm: VmRecord;
  /** The trailer's digest of this image (32 hex digits): what a child image names its parent by. */
  digest: string;
  /** Size of the encoded image in bytes. */
  bytes: number;
}
