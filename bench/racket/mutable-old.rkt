#lang racket/base
;; mutable-old.rkt - a large mutable old generation updated sparsely: a
;; vector of SLOTS slots and a hash table of SLOTS/2 entries live through
;; the run; each round WRITES random slots and keys get fresh values, and
;; short-lived garbage (kept in a small ring, so that the compiler cannot
;; drop it) drives minor collections.  The shape a card-marking barrier
;; is for: between two collections a few thousand slots of a few MiB of
;; old pointers change, and the rest need no rescanning.
;; usage: racket mutable-old.rkt [SLOTS ROUNDS WRITES]
(define args (current-command-line-arguments))
(define (arg i d) (if (> (vector-length args) i) (string->number (vector-ref args i)) d))
(define slots (arg 0 400000))
(define rounds (arg 1 400))
(define writes (arg 2 100))
(define v (make-vector slots #f))
(define h (make-hasheqv))
(for ([i (in-range slots)]) (vector-set! v i (cons i i)))
(for ([i (in-range (quotient slots 2))]) (hash-set! h i (list i)))
(collect-garbage)
(define ring (make-vector 64 #f))
(define seed 42)
(define (rnd n) (set! seed (modulo (+ (* seed 1103515245) 12345) 2147483648)) (modulo seed n))
(for ([r (in-range rounds)])
  (for ([k (in-range writes)])
    (define i (rnd slots))
    (vector-set! v i (cons i r))
    (hash-set! h (rnd (quotient slots 2)) (list r)))
  (for ([k (in-range 4000)])
    (vector-set! ring (bitwise-and k 63) (make-vector 16 k))))
(printf "mutable-old: ~a slots, ~a rounds, ~a writes, sum ~a ~a\n" slots rounds writes
        (for/fold ([s 0]) ([x (in-vector v)]) (modulo (+ s (cdr x)) 1000000007))
        (for/fold ([s 0]) ([(k x) (in-hash h)]) (modulo (+ s (car x)) 1000000007)))
