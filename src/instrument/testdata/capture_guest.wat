;; A guest for capture tests: a tight loop, a recursion that keeps frames on a
;; shadow stack in linear memory, an i64 global, and a WASI call per round.
;; Output: 8 raw bytes per fd_write; the test compares outputs, not values.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $sp (mut i32) (i32.const 65536))
  (global $count (mut i64) (i64.const 0))

  ;; rec(n) = n < 2 ? n : rec(n-1) + 3*rec(n-2); n lives in memory across the first call
  (func $rec (param $n i32) (result i32)
    (local $a i32)
    (if (i32.lt_s (local.get $n) (i32.const 2)) (then (return (local.get $n))))
    (global.set $sp (i32.sub (global.get $sp) (i32.const 16)))
    (i32.store (global.get $sp) (local.get $n))
    (local.set $a (call $rec (i32.sub (local.get $n) (i32.const 1))))
    (global.set $count (i64.add (global.get $count) (i64.const 1)))
    (local.set $a
      (i32.add (local.get $a)
        (i32.mul (call $rec (i32.sub (i32.load (global.get $sp)) (i32.const 2))) (i32.const 3))))
    (global.set $sp (i32.add (global.get $sp) (i32.const 16)))
    (local.get $a))

  ;; n steps of an LCG
  (func $lcg (param $n i32) (result i64)
    (local $x i64)
    (local.set $x (i64.const 1))
    (loop $l
      (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005))
                             (i64.const 1442695040888963407)))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (local.get $x))

  (func $out (param $v i64)
    (i64.store (i32.const 16) (local.get $v))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func (export "_start")
    (local $i i32)
    (loop $rounds
      (call $out (call $lcg (i32.add (i32.const 20000) (local.get $i))))
      (call $out (i64.extend_i32_u (call $rec (i32.add (i32.const 12) (local.get $i)))))
      (br_if $rounds (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 5))))
    (call $out (global.get $count))))
