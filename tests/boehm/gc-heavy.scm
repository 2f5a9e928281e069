;;; gc-heavy.scm - a GC-heavy Guile program with deterministic output.
;;;
;;; Run by tests/test_boehm_suite.c twice, once on the stock libgc.so.1 and
;;; once on the fgvm adapter's (LD_LIBRARY_PATH, GC_ENABLE_INCREMENTAL=1);
;;; the two standard outputs must be identical byte for byte.  Everything
;;; printed on stdout is a function of the program alone (no addresses, no
;;; timings, no GC statistics).  On stderr it names the libgc.so.1 mapped
;;; into the process (from /proc/self/maps), so the test can check which
;;; library was really loaded.
;;;
;;; Usage: guile --no-auto-compile -s gc-heavy.scm [SCALE]   (default 1)

(use-modules (ice-9 rdelim))

(define scale
  (let ((args (cdr (command-line))))
    (if (null? args) 1 (string->number (car args)))))

;; A checksum independent of Guile's hashing: FNV-1a over 32 bits.
(define (fnv-string h s)
  (let loop ((h h) (i 0))
    (if (= i (string-length s))
        h
        (loop (logand (* (logxor h (char->integer (string-ref s i))) 16777619)
                      #xffffffff)
              (+ i 1)))))
(define (fnv-int h n) (fnv-string h (number->string n)))

;; 1. binary-trees (the Benchmarks Game's GC benchmark): many short-lived
;; trees while one long-lived tree stays reachable.
(define (make-tree d)
  (if (= d 0)
      (cons #f #f)
      (cons (make-tree (- d 1)) (make-tree (- d 1)))))
(define (check-tree t)
  (if (car t)
      (+ 1 (check-tree (car t)) (check-tree (cdr t)))
      1))

(define (binary-trees max-depth)
  (let ((min-depth 4))
    (format #t "stretch tree of depth ~a\t check: ~a\n" (+ max-depth 1)
            (check-tree (make-tree (+ max-depth 1))))
    (let ((long-lived (make-tree max-depth)))
      (do ((d min-depth (+ d 2))) ((> d max-depth))
        (let ((iterations (ash 1 (+ (- max-depth d) min-depth))))
          (let loop ((i 0) (sum 0))
            (if (< i iterations)
                (loop (+ i 1) (+ sum (check-tree (make-tree d))))
                (format #t "~a\t trees of depth ~a\t check: ~a\n"
                        iterations d sum)))))
      (format #t "long lived tree of depth ~a\t check: ~a\n" max-depth
              (check-tree long-lived)))))

;; 2. hash tables: string keys to vectors, old entries updated to point to
;; new objects (old-to-young stores), some removed, then everything checked.
(define (hash-tables n rounds)
  (let ((table (make-hash-table)))
    (do ((i 0 (+ i 1))) ((= i n))
      (hash-set! table (string-append "key-" (number->string i))
                 (vector i (* i i) (number->string i 16))))
    (do ((r 1 (+ r 1))) ((> r rounds))
      (do ((i (modulo r 7) (+ i 7))) ((>= i n))
        (let ((k (string-append "key-" (number->string i))))
          (hash-set! table k
                     (vector i (* i r) (string-append (number->string r) ":"
                                                       (number->string i))))))
      (do ((i (modulo r 13) (+ i 101))) ((>= i n))
        (hash-remove! table (string-append "key-" (number->string i)))))
    (let ((keys (sort (hash-map->list (lambda (k v) k) table) string<?)))
      (let loop ((ks keys) (h 2166136261) (count 0))
        (if (null? ks)
            (format #t "hash table: ~a entries, checksum ~a\n" count h)
            (let* ((v (hash-ref table (car ks)))
                   (i (vector-ref v 0)))
              (unless (string=? (car ks)
                                (string-append "key-" (number->string i)))
                (error "hash table entry corrupted" (car ks) v))
              (loop (cdr ks)
                    (fnv-string (fnv-int (fnv-int h i) (vector-ref v 1))
                                (if (string? (vector-ref v 2))
                                    (vector-ref v 2)
                                    (error "bad value" v)))
                    (+ count 1))))))))

;; 3. string building: string ports, string-append chains, lists of
;; strings kept alive while garbage is produced.
(define (string-building n)
  (let loop ((i 0) (kept '()) (h 2166136261))
    (if (= i n)
        (let ((joined (apply string-append (reverse kept))))
          (format #t "strings: kept ~a, joined length ~a, checksum ~a\n"
                  (length kept) (string-length joined)
                  (fnv-string h joined)))
        (let* ((s (call-with-output-string
                   (lambda (port)
                     (do ((j 0 (+ j 1))) ((= j (+ 5 (modulo i 17))))
                       (display (* i j) port)
                       (write-char #\, port)))))
               (t (string-append s (make-string (modulo i 23) #\x))))
          (loop (+ i 1)
                (if (= 0 (modulo i 10)) (cons t kept) kept)
                (fnv-string h t))))))

;; 4. weak tables (disappearing links in the collector): entries whose
;; keys stay referenced must stay, whatever happens to the others.
(define (weak-tables n)
  (let ((table (make-weak-key-hash-table))
        (kept '()))
    (do ((i 0 (+ i 1))) ((= i n))
      (let ((key (list 'key i)))
        (hash-set! table key (make-string (modulo i 37) #\w))
        (when (= 0 (modulo i 10))
          (set! kept (cons key kept)))))
    (let loop ((ks kept) (sum 0))
      (if (null? ks)
          (format #t "weak table: ~a kept keys, sum ~a\n" (length kept) sum)
          (let ((v (hash-ref table (car ks))))
            (unless (and (string? v)
                         (= (string-length v) (modulo (cadar ks) 37)))
              (error "weak table lost a referenced key" (car ks) v))
            (loop (cdr ks) (+ sum (cadar ks) (string-length v))))))))

;; 5. association lists and vectors rebuilt many times (mixed sizes).
(define (vectors n)
  (let ((v (make-vector 4096 #f)))
    (do ((i 0 (+ i 1))) ((= i n))
      (vector-set! v (modulo (* i 7919) 4096)
                   (list i (make-vector (modulo i 61) i) (number->string i))))
    (let loop ((j 0) (sum 0))
      (if (= j 4096)
          (format #t "vectors: sum ~a\n" sum)
          (let ((e (vector-ref v j)))
            (loop (+ j 1)
                  (if e
                      (begin
                        (unless (and (= (vector-length (cadr e))
                                        (modulo (car e) 61))
                                     (string=? (caddr e)
                                               (number->string (car e))))
                          (error "vector entry corrupted" e))
                        (+ sum (car e) (apply + (vector->list (cadr e)))))
                      sum)))))))

(define (report-libgc)
  (call-with-input-file "/proc/self/maps"
    (lambda (port)
      (let loop ((line (read-line port)))
        (cond ((eof-object? line)
               (format (current-error-port) "gc-heavy: no libgc.so mapped\n"))
              ((string-contains line "libgc.so")
               (format (current-error-port) "gc-heavy: mapped ~a\n"
                       (car (last-pair (string-split line #\space)))))
              (else (loop (read-line port))))))))

(report-libgc)
(binary-trees (+ 12 scale))
(hash-tables (* scale 20000) 6)
(string-building (* scale 20000))
(weak-tables (* scale 100000))
(vectors (* scale 200000))
(display "done\n")
