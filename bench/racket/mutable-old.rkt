#lang racket/base
;; mutable-old.rkt - a large mutable old generation updated sparsely: a
;; hash table of 200k entries and a vector of 400k slots live through the
;; run; each round a few thousand random slots and keys get fresh values
;; while short-lived garbage drives minor collections.  The shape a
;; card-marking barrier is for.  usage: racket mutable-old.rkt [SLOTS ROUNDS]
(define args (current-command-line-arguments))
(define (arg i d) (if (> (vector-length args) i) (string->number (vector-ref args i)) d))
(define slots (arg 0 400000))
(define rounds (arg 1 100))
(define v (make-vector slots #f))
(define h (make-hasheqv))
(for ([i (in-range slots)]) (vector-set! v i (cons i i)))
(for ([i (in-range (quotient slots 2))]) (hash-set! h i (list i)))
(collect-garbage)
(define seed 42)
(define (rnd n) (set! seed (modulo (+ (* seed 1103515245) 12345) 2147483648)) (modulo seed n))
(for ([r (in-range rounds)])
  (for ([k (in-range 2000)])
    (define i (rnd slots))
    (vector-set! v i (cons i r))
    (hash-set! h (rnd (quotient slots 2)) (list r)))
  (for ([k (in-range 4000)]) (make-vector 16 k)))
(printf "mutable-old: ~a slots, ~a rounds, sum ~a\n" slots rounds
        (for/fold ([s 0]) ([x (in-vector v)]) (modulo (+ s (cdr x)) 1000000007)))
