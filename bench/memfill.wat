;; Benchmark guest: grows its memory to MIB MiB, writes non-zero data to
;; every STRIDE-th 64 KiB page (all pages by default), then calls
;; sched_yield forever. The VM is frozen at one of those sched_yield calls,
;; so a checkpoint sees exactly the memory written here.
;;
;;   memfill.wat [MIB [STRIDE]]     defaults: MIB = 1, STRIDE = 1
;;
;; Every 8-byte word gets (address + 1) * 0x9E3779B97F4A7C15, so every
;; written page is non-zero and different from every other page (the image
;; format elides zero pages and writes identical pages once: a constant fill
;; would measure neither the hashing nor the copying).
;; It never exits; an argument it cannot use ends it with proc_exit(2).
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $sched_yield (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)

  ;; Decimal number at $p (NUL-terminated); exits with 2 on anything else.
  (func $parse (param $p i32) (result i32)
    (local $n i32) (local $c i32)
    (if (i32.eqz (i32.load8_u (local.get $p))) (then (call $proc_exit (i32.const 2))))
    (block $done
      (loop $next
        (local.set $c (i32.load8_u (local.get $p)))
        (br_if $done (i32.eqz (local.get $c)))
        (if (i32.or (i32.lt_u (local.get $c) (i32.const 48)) (i32.gt_u (local.get $c) (i32.const 57)))
          (then (call $proc_exit (i32.const 2))))
        (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (i32.sub (local.get $c) (i32.const 48))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $n))

  (func (export "_start")
    (local $argc i32) (local $mib i32) (local $stride i32) (local $pages i32)
    (local $page i32) (local $addr i32) (local $end i32)
    (local.set $mib (i32.const 1))
    (local.set $stride (i32.const 1))
    ;; argc at 0, argv buffer size at 4, argv pointers at 16.., strings at 1024..
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (local.set $argc (i32.load (i32.const 0)))
    (if (i32.or (i32.gt_u (local.get $argc) (i32.const 200)) (i32.gt_u (i32.load (i32.const 4)) (i32.const 60000)))
      (then (call $proc_exit (i32.const 2))))
    (drop (call $args_get (i32.const 16) (i32.const 1024)))
    (if (i32.ge_u (local.get $argc) (i32.const 2))
      (then (local.set $mib (call $parse (i32.load (i32.const 20))))))
    (if (i32.ge_u (local.get $argc) (i32.const 3))
      (then (local.set $stride (call $parse (i32.load (i32.const 24))))))
    (if (i32.or (i32.eqz (local.get $mib)) (i32.gt_u (local.get $mib) (i32.const 4095)))
      (then (call $proc_exit (i32.const 2))))
    (if (i32.eqz (local.get $stride)) (then (call $proc_exit (i32.const 2))))
    (local.set $pages (i32.mul (local.get $mib) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then (call $proc_exit (i32.const 3))))))
    ;; Fill every STRIDE-th page.
    (block $filled
      (loop $pageloop
        (br_if $filled (i32.ge_u (local.get $page) (local.get $pages)))
        (local.set $addr (i32.shl (local.get $page) (i32.const 16)))
        (local.set $end (i32.add (local.get $addr) (i32.const 65536)))
        (loop $word
          (i64.store (local.get $addr)
            (i64.mul (i64.add (i64.extend_i32_u (local.get $addr)) (i64.const 1)) (i64.const 0x9E3779B97F4A7C15)))
          (local.set $addr (i32.add (local.get $addr) (i32.const 8)))
          (br_if $word (i32.lt_u (local.get $addr) (local.get $end))))
        (local.set $page (i32.add (local.get $page) (local.get $stride)))
        (br $pageloop)))
    ;; Idle at a yield point until frozen.
    (loop $idle
      (drop (call $sched_yield))
      (br $idle))))
