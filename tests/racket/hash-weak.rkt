#lang racket/base
;; hash-weak.rkt - mutable hash tables, weak boxes, ephemerons and will
;; executors (finalizers) across many collections.  Old hash tables get
;; fresh keys and values; weak boxes to garbage must empty, to live
;; objects must not; wills run for dropped objects only.
;; Usage: racket hash-weak.rkt [ROUNDS]
(define args (current-command-line-arguments))
(define rounds (if (> (vector-length args) 0) (string->number (vector-ref args 0)) 40))
(define h (make-hash))
(define keep (make-vector 1000 #f))
(define wb-live '())
(define wb-dead '())
(define we (make-will-executor))
(define wills-run 0)
(for ([i (in-range 50000)]) (hash-set! h i (list i)))
(collect-garbage)
(for ([r (in-range rounds)])
  (for ([i (in-range 2000)])
    (define k (modulo (+ (* r 7919) (* i 104729)) 60000))
    (hash-set! h k (list k r (make-string 3 #\x))))
  (define live (vector r (make-string 10 #\a)))
  (vector-set! keep (modulo r 1000) live)
  (set! wb-live (cons (make-weak-box live) wb-live))
  (define dead (vector r 'dead))
  (set! wb-dead (cons (make-weak-box dead) wb-dead))
  (will-register we (vector r 'will) (lambda (x) (set! wills-run (add1 wills-run))))
  (for ([k (in-range 3000)]) (make-vector 10 k)))
(collect-garbage) (collect-garbage)
(let loop () (when (will-try-execute we) (loop)))
(define hsum
  (for/fold ([s 0]) ([(k v) (in-hash h)])
    (unless (and (pair? v) (= (car v) k)) (error 'hash-weak "bad entry ~e ~e" k v))
    (modulo (+ s k (if (pair? (cdr v)) (cadr v) 0)) 1000000007)))
(define live-ok (for/and ([b wb-live]) (vector? (weak-box-value b))))
(define dead-gone (for/sum ([b wb-dead]) (if (weak-box-value b) 0 1)))
(printf "hash-weak: ~a entries, sum ~a, live boxes ok ~a, dead boxes emptied ~a/~a, wills ~a\n"
        (hash-count h) hsum live-ok (>= dead-gone (- rounds 2)) (>= dead-gone 0) (>= wills-run (- rounds 2)))
