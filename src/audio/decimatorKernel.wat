(module
  ;; Layout (bytes): 0..255 the 63 taps and a zero as f32 (64 lanes); 256.. the work buffer (f32,
  ;; up to 1024 samples); 4352.. the output (i16, up to 512 samples).
  (memory (export "memory") 1)
  (func (export "filter") (param $p i32) (param $fill i32) (result i32)
    (local $o i32) (local $base i32) (local $k i32) (local $acc v128) (local $s f32) (local $r i32)
    (block $done
      (loop $outer
        (br_if $done (i32.ge_u (local.get $p) (local.get $fill)))
        ;; the window's oldest sample: work[p - 62]
        (local.set $base
          (i32.add (i32.const 256) (i32.shl (i32.sub (local.get $p) (i32.const 62)) (i32.const 2))))
        (local.set $acc (v128.const f32x4 0 0 0 0))
        (local.set $k (i32.const 0))
        (loop $inner
          (local.set $acc
            (f32x4.add (local.get $acc)
              (f32x4.mul (v128.load (local.get $k))
                         (v128.load (i32.add (local.get $base) (local.get $k))))))
          (local.set $k (i32.add (local.get $k) (i32.const 16)))
          (br_if $inner (i32.lt_u (local.get $k) (i32.const 256))))
        (local.set $s
          (f32.add
            (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
            (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc)))))
        ;; round to nearest (ties to even), then clamp to PCM16 (the saturating conversion comes
        ;; first, so a huge sum cannot trap)
        (local.set $r (i32.trunc_sat_f32_s (f32.nearest (local.get $s))))
        (if (i32.gt_s (local.get $r) (i32.const 32767)) (then (local.set $r (i32.const 32767))))
        (if (i32.lt_s (local.get $r) (i32.const -32768)) (then (local.set $r (i32.const -32768))))
        (i32.store16
          (i32.add (i32.const 4352) (i32.shl (local.get $o) (i32.const 1)))
          (local.get $r))
        (local.set $o (i32.add (local.get $o) (i32.const 1)))
        (local.set $p (i32.add (local.get $p) (i32.const 3)))
        (br $outer)))
    (local.get $o)))
