#lang racket/base
;; old-mutable.rkt - a large old generation updated sparsely: the case a
;; write barrier exists for.  A vector of 200k slots, each holding a short
;; list, ages into the old generation; then each round stores a few
;; thousand fresh lists (young objects reachable only from old pages) at
;; random slots, and allocates garbage so that minor collections run in
;; between.  A store the barrier missed leaves an old slot pointing at a
;; collected list: the checksum changes, or the program crashes.
;; Usage: racket old-mutable.rkt [SLOTS ROUNDS STORES]
(require racket/unsafe/ops)
(define args (current-command-line-arguments))
(define (arg i d) (if (> (vector-length args) i) (string->number (vector-ref args i)) d))
(define slots (arg 0 200000))
(define rounds (arg 1 60))
(define stores (arg 2 3000))
(define v (make-vector slots #f))
(for ([i (in-range slots)]) (vector-set! v i (list i i (number->string i))))
(collect-garbage) (collect-garbage)
(define seed 12345)
(define (rnd n) (set! seed (modulo (+ (* seed 1103515245) 12345) 2147483648)) (modulo seed n))
(define (item i r) (list i (+ i r) (number->string (+ i r))))
(for ([r (in-range rounds)])
  (for ([k (in-range stores)])
    (define i (rnd slots))
    (vector-set! v i (item i r)))
  ;; garbage: minor collections between the stores
  (for ([k (in-range 2000)]) (make-vector 20 k)))
(define (check)
  (for/fold ([sum 0]) ([x (in-vector v)])
    (unless (and (pair? x) (string? (caddr x))
                 (equal? (caddr x) (number->string (cadr x))))
      (error 'old-mutable "slot corrupted: ~e" x))
    (modulo (+ (* sum 31) (car x) (cadr x)) 1000000007)))
(printf "old-mutable: ~a slots, ~a rounds, checksum ~a\n" slots rounds (check))
