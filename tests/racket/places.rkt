#lang racket/base
;; places.rkt - places: each has its own collector (and, in the port, its
;; own adapter instance) and mutates an old vector of its own; results and
;; large messages go back over place channels (message memory adopted by
;; the receiving place).
;; Usage: racket places.rkt [PLACES ROUNDS]
(require racket/place)
(provide main worker)
(define (worker ch)
  (define id (place-channel-get ch))
  (define rounds (place-channel-get ch))
  (define v (make-vector 100000 #f))
  (for ([i 100000]) (vector-set! v i (list id i)))
  (collect-garbage)
  (for ([r rounds])
    (for ([i (in-range r 100000 53)]) (vector-set! v i (list id (+ i r))))
    (for ([k 3000]) (make-vector 8 k))
    ;; a big message: a vector of fresh lists
    (place-channel-put ch (for/vector ([i 3000]) (list id r i))))
  (place-channel-put ch
    (for/fold ([s 0]) ([x (in-vector v)])
      (unless (= (car x) id) (error 'worker "corrupted ~e" x))
      (modulo (+ (* s 3) (cadr x)) 1000000007))))
(define (main . argv)
  (define np (if (pair? argv) (string->number (car argv)) 3))
  (define rounds (if (and (pair? argv) (pair? (cdr argv))) (string->number (cadr argv)) 20))
  (define ps (for/list ([id np]) (dynamic-place (variable-reference->module-source (#%variable-reference)) 'worker)))
  (for ([p ps] [id np]) (place-channel-put p id) (place-channel-put p rounds))
  (define kept '())
  (define results
    (for/list ([p ps] [id np])
      (for ([r rounds])
        (define m (place-channel-get p))
        (unless (and (vector? m) (= (vector-length m) 3000)
                     (equal? (vector-ref m 2999) (list id r 2999)))
          (error 'main "bad message ~e" (vector-ref m 0)))
        (set! kept (cons m kept))
        (collect-garbage 'minor))
      (place-channel-get p)))
  (for ([p ps]) (place-wait p))
  (define msgsum (for*/fold ([s 0]) ([m kept] [x (in-vector m)]) (modulo (+ s (caddr x)) 1000000007)))
  (printf "places: ~a places, results ~a, messages ~a\n" np results msgsum))
(module+ main (apply main (vector->list (current-command-line-arguments))))
