;;; alloc-long.scm - long-running and allocation-heavy: a sliding window
;;; of medium-lived records (vectors holding lists and strings) with most
;;; allocation dying young; window entries are replaced FIFO.
;;; usage: [WINDOW] [STEPS]
(define args (map string->number (cdr (command-line))))
(define (arg i d) (if (> (length args) i) (list-ref args i) d))
(define window (arg 0 100000))
(define steps (arg 1 600000))
(define rs (seed->random-state 11))
(define win (make-vector window #f))
(define acc 0)
(do ((s 0 (+ s 1))) ((= s steps))
  (let* ((junk (map (lambda (x) (* x s)) (iota 8)))
         (rec (vector s (list->vector junk) (number->string s))))
    (set! acc (modulo (+ acc (apply + junk)) 1000000007))
    (when (= 0 (modulo s 3))
      (vector-set! win (random window rs) rec))))
(define sum 0)
(do ((i 0 (+ i 1))) ((= i window))
  (let ((r (vector-ref win i))) (when r (set! sum (modulo (+ sum (vector-ref r 0)) 1000000007)))))
(display (list 'alloc-long window steps acc sum)) (newline)
