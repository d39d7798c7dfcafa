;; A `schedule` function with two core modules, each with its own linear memory; each run grows
;; both by 40 MiB (80 MiB in all). Under a 64 MiB limit neither memory alone is over it, their
;; total is: tests/security/memory.rs checks that the limit covers the instance as a whole.
(component
  (core module $other
    (memory (export "memory") 1)
    (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
  (core module $main
    (import "other" "grow" (func $grow_other (param i32) (result i32)))
    (memory (export "memory") 1)
    (global $next (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $next) (i32.const 7)) (i32.const -8)))
      (global.set $next (i32.add (local.get $p) (local.get 3)))
      (local.get $p))
    ;; Grow each memory by 40 MiB (640 pages): 80 MiB in all.
    (func (export "handle") (param i32 i32 i32 i32 i64 i64) (result i32)
      (if (i32.eq (memory.grow (i32.const 640)) (i32.const -1)) (then unreachable))
      (if (i32.eq (call $grow_other (i32.const 640)) (i32.const -1)) (then unreachable))
      (i32.store8 (i32.const 16) (i32.const 0))
      (i32.const 16)))
  (core instance $o (instantiate $other))
  (core instance $m (instantiate $main (with "other" (instance $o))))
  (type $event (record (field "schedule" string) (field "expression" string)
                       (field "scheduled-time" u64) (field "fire-time" u64)))
  (func $handle (param "event" $event) (result (result (error string)))
    (canon lift (core func $m "handle") (memory (core memory $m "memory")) (realloc (core func $m "realloc"))))
  (component $shim
    (type $event' (record (field "schedule" string) (field "expression" string)
                          (field "scheduled-time" u64) (field "fire-time" u64)))
    (import "import-type-scheduled-event" (type $ev (eq $event')))
    (import "import-func-handle" (func $f (param "event" $ev) (result (result (error string)))))
    (export $ev2 "scheduled-event" (type $ev))
    (export "handle" (func $f) (func (param "event" $ev2) (result (result (error string))))))
  (instance $i (instantiate $shim
    (with "import-func-handle" (func $handle))
    (with "import-type-scheduled-event" (type $event))))
  (export "wasmfn:platform/schedule-handler@0.1.0" (instance $i)))
