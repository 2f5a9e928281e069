#lang racket/base
;; binary-trees (the Computer Language Benchmarks Game's program): many
;; short-lived trees plus one long-lived tree that survives every minor
;; collection.  usage: racket binary-trees.rkt [N]   (default 16)
(require racket/cmdline)

(struct node (left right))

(define (make d)
  (if (= d 0)
      (node #f #f)
      (let ([d2 (sub1 d)])
        (node (make d2) (make d2)))))

(define (check t)
  (if (node-left t)
      (+ 1 (check (node-left t)) (check (node-right t)))
      1))

(define (main n)
  (define max-depth (max 6 n))
  (define stretch (add1 max-depth))
  (printf "stretch tree of depth ~a\t check: ~a\n" stretch (check (make stretch)))
  (define long-lived (make max-depth))
  (for ([d (in-range 4 (add1 max-depth) 2)])
    (define iters (arithmetic-shift 1 (+ (- max-depth d) 4)))
    (printf "~a\t trees of depth ~a\t check: ~a\n"
            iters d
            (for/fold ([c 0]) ([i (in-range iters)])
              (+ c (check (make d))))))
  (printf "long lived tree of depth ~a\t check: ~a\n" max-depth (check long-lived)))

(main (command-line #:args ([n "16"]) (string->number n)))
