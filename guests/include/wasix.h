/*
 * wasix.h — the WASIX process calls (module "wasix_32v1") that crvm
 * implements, declared for programs built with plain wasi-libc. Names,
 * signatures and struct layouts follow wasix-libc's api_wasix.h; see
 * docs/wasix-abi.md. Every call returns an errno (0 = success).
 *
 * Example:
 *     wasix_pid_t pid;
 *     wasix_proc_fork(1, &pid);            // 0 in the child, the child's pid in the parent
 *     wasix_option_pid_t who = { .tag = WASIX_OPTION_SOME, .u.some = pid };
 *     wasix_join_status_t st;
 *     wasix_proc_join(&who, 0, &st);       // st.u.exit_normal: the child's exit code
 */
#ifndef CRVM_WASIX_H
#define CRVM_WASIX_H

#include <stddef.h>
#include <stdint.h>

#define WASIX_IMPORT(name) __attribute__((import_module("wasix_32v1"), import_name(#name)))

typedef int32_t  wasix_pid_t;
typedef int32_t  wasix_fd_t;
typedef uint16_t wasix_errno_t;
typedef uint8_t  wasix_signal_t;

/* __wasi_option_pid_t: size 8, align 4 */
typedef struct wasix_option_pid { uint8_t tag; union { uint8_t none; wasix_pid_t some; } u; } wasix_option_pid_t;
#define WASIX_OPTION_NONE 0
#define WASIX_OPTION_SOME 1

/* __wasi_join_status_t: size 6, align 2 */
typedef struct wasix_join_status {
    uint8_t tag;
    union {
        uint8_t nothing;
        wasix_errno_t exit_normal;
        struct { wasix_errno_t exit_code; wasix_signal_t signal; } exit_signal;
        wasix_signal_t stopped;
    } u;
} wasix_join_status_t;
#define WASIX_JOIN_NON_BLOCKING 1u
#define WASIX_JOIN_WAKE_STOPPED 2u
#define WASIX_JOIN_STATUS_NOTHING     0
#define WASIX_JOIN_STATUS_EXIT_NORMAL 1
#define WASIX_JOIN_STATUS_EXIT_SIGNAL 2
#define WASIX_JOIN_STATUS_STOPPED     3

/* __wasi_proc_spawn_fd_op_t: size 56, align 8 */
typedef struct wasix_proc_spawn_fd_op {
    uint8_t  cmd;            /* 0 close, 1 dup2, 2 open, 3 chdir, 4 fchdir */
    int32_t  fd;
    int32_t  src_fd;
    const uint8_t *path;
    uint32_t path_len;
    uint32_t dirflags;       /* lookupflags: 1 = symlink_follow */
    uint16_t oflags;         /* 1 creat, 2 directory, 4 excl, 8 trunc */
    uint64_t fs_rights_base;
    uint64_t fs_rights_inheriting;
    uint16_t fdflags;        /* 1 append, 2 dsync, 4 nonblock, 8 rsync, 16 sync */
    uint16_t fdflagsext;     /* 1 cloexec */
} wasix_proc_spawn_fd_op_t;

/* __wasi_signal_disposition_t: size 2, align 1 */
typedef struct wasix_signal_disposition { uint8_t sig; uint8_t disp; /* 0 default, 1 ignore */ } wasix_signal_disposition_t;

_Static_assert(sizeof(wasix_option_pid_t) == 8 && _Alignof(wasix_option_pid_t) == 4, "option_pid");
_Static_assert(sizeof(wasix_join_status_t) == 6 && _Alignof(wasix_join_status_t) == 2, "join_status");
_Static_assert(offsetof(wasix_join_status_t, u.exit_signal.signal) == 4, "join_status.exit_signal");
_Static_assert(sizeof(wasix_proc_spawn_fd_op_t) == 56 && _Alignof(wasix_proc_spawn_fd_op_t) == 8, "fd_op");
_Static_assert(offsetof(wasix_proc_spawn_fd_op_t, fs_rights_base) == 32, "fd_op.rights");
_Static_assert(offsetof(wasix_proc_spawn_fd_op_t, fdflagsext) == 50, "fd_op.fdflagsext");

/* Signal numbers (WASIX = Linux numbering; NOT preview1's). */
#define WASIX_SIGHUP 1
#define WASIX_SIGINT 2
#define WASIX_SIGQUIT 3
#define WASIX_SIGABRT 6
#define WASIX_SIGKILL 9
#define WASIX_SIGUSR1 10
#define WASIX_SIGSEGV 11
#define WASIX_SIGUSR2 12
#define WASIX_SIGPIPE 13
#define WASIX_SIGALRM 14
#define WASIX_SIGTERM 15
#define WASIX_SIGCHLD 17
#define WASIX_SIGCONT 18
#define WASIX_SIGSTOP 19
#define WASIX_SIGTSTP 20

/* POSIX wait status, as wasix-libc's waitpid builds it. */
#define WASIX_W_EXITCODE(ret, sig) (((ret) << 8) | (sig))
#define WASIX_W_STOPCODE(sig)      (((sig) << 8) | 0x7f)

/* All calls return a __wasi_errno_t (0 = success) in an i32. */
WASIX_IMPORT(proc_fork)   int32_t wasix_proc_fork(int32_t copy_memory, wasix_pid_t *pid);
WASIX_IMPORT(proc_exec4)  int32_t wasix_proc_exec4(const char *name, size_t name_len,
                                                   const char *const *argv, size_t argc,
                                                   const char *const *envp, size_t envc,  /* envp NULL: inherit */
                                                   int32_t search_path, const char *path, size_t path_len);
WASIX_IMPORT(proc_spawn3) int32_t wasix_proc_spawn3(const char *name, size_t name_len,
                                                    const char *const *argv, size_t argc,
                                                    const char *const *envp, size_t envc,
                                                    const wasix_proc_spawn_fd_op_t *fd_ops, size_t fd_ops_len,
                                                    const wasix_signal_disposition_t *sigs, size_t sigs_len,
                                                    int32_t search_path, const char *path, size_t path_len,
                                                    wasix_pid_t *pid);
WASIX_IMPORT(proc_join)   int32_t wasix_proc_join(wasix_option_pid_t *pid, uint32_t flags, wasix_join_status_t *status);
WASIX_IMPORT(proc_id)     int32_t wasix_proc_id(wasix_pid_t *pid);
WASIX_IMPORT(proc_parent) int32_t wasix_proc_parent(wasix_pid_t pid, wasix_pid_t *parent);
WASIX_IMPORT(proc_signal) int32_t wasix_proc_signal(wasix_pid_t pid, int32_t sig);
WASIX_IMPORT(proc_exit2)  void    wasix_proc_exit2(int32_t code);
WASIX_IMPORT(fd_pipe)     int32_t wasix_fd_pipe(wasix_fd_t *fd0, wasix_fd_t *fd1);
WASIX_IMPORT(fd_dup)      int32_t wasix_fd_dup(wasix_fd_t fd, wasix_fd_t *new_fd);
WASIX_IMPORT(fd_dup2)     int32_t wasix_fd_dup2(wasix_fd_t fd, wasix_fd_t min_result_fd, int32_t cloexec, wasix_fd_t *new_fd);
WASIX_IMPORT(proc_raise_interval) int32_t wasix_proc_raise_interval(int32_t sig, uint64_t interval, int32_t repeat);


#endif /* CRVM_WASIX_H */
