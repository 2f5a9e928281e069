#lang racket/base
;; threads-futures.rkt - old vectors written by Racket threads and by
;; futures (which run on other OS threads: their stores reach old pages
;; while the main thread allocates), with collections in between.
;; Usage: racket threads-futures.rkt [ROUNDS]
(require racket/future)
(define args (current-command-line-arguments))
(define rounds (if (> (vector-length args) 0) (string->number (vector-ref args 0)) 30))
(define n 4)
(define vs (for/vector ([t n]) (make-vector 50000 #f)))
(for* ([t n] [i 50000]) (vector-set! (vector-ref vs t) i (cons t i)))
(collect-garbage)
(define (work t r)
  (define v (vector-ref vs t))
  (for ([i (in-range (+ (* r 13) t) 50000 97)])
    (vector-set! v i (cons t (+ i r)))))
(for ([r (in-range rounds)])
  (define fs (for/list ([t (in-range 2)]) (future (lambda () (work t r)))))
  (define ths (for/list ([t (in-range 2 n)]) (thread (lambda () (work t r)))))
  (for ([k (in-range 3000)]) (make-vector 8 k))
  (for-each touch fs)
  (for-each thread-wait ths))
(define sum
  (for*/fold ([s 0]) ([t n] [x (in-vector (vector-ref vs t))])
    (unless (and (pair? x) (= (car x) t)) (error 'threads-futures "corrupted ~e" x))
    (modulo (+ (* s 7) (cdr x)) 1000000007)))
(printf "threads-futures: ~a rounds, checksum ~a\n" rounds sum)
