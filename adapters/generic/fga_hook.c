/* fga_hook.c - context-less hook slots bound to a context by libffi closures.
 *
 * A hook owns its closure and the call description (cif) the closure
 * refers to: libffi keeps a pointer to the cif, so it must live exactly as
 * long as the closure.  The closure's user data is the hook itself; the
 * handler reads fn and ctx from it and calls fn.  Nothing in a hook changes
 * after it is made, so calls of its entry from any thread need no lock.
 */
#include "fga_hook.h"

#include <errno.h>
#include <ffi.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

union fga_fn {
	void (*v)(void *ctx);
	void (*i)(void *ctx, int arg);
};

struct fga_hook {
	ffi_closure *closure;	/* writable address, from ffi_closure_alloc */
	ffi_cif cif;
	ffi_type *args[1];
	void *ctx;
	union fga_fn fn;
};

static atomic_ulong live;

unsigned long fga_hook_live(void)
{
	return atomic_load_explicit(&live, memory_order_relaxed);
}

static int ffi_err(ffi_status st)
{
	switch (st) {
	case FFI_OK:
		return 0;
	case FFI_BAD_ABI:
		return -ENOTSUP;
	case FFI_BAD_TYPEDEF:
		return -EINVAL;
	default:
		/* FFI_BAD_ARGTYPE (libffi 3.4) and anything later: libffi
		 * refused the signature we described. */
		return -EINVAL;
	}
}

/* The closures' handlers: libffi has put the entry's arguments in args. */
static void call_void(ffi_cif *cif, void *ret, void **args, void *data)
{
	struct fga_hook *h = data;

	(void)cif;
	(void)ret;
	(void)args;
	h->fn.v(h->ctx);
}

static void call_int(ffi_cif *cif, void *ret, void **args, void *data)
{
	struct fga_hook *h = data;

	(void)cif;
	(void)ret;
	h->fn.i(h->ctx, *(int *)args[0]);
}

/* Make a hook whose entry takes nargs (0 or 1) ints and returns nothing,
 * and whose closure runs handler, which calls fn (NULL if !has_fn) with
 * ctx.  *out and *code are NULL on failure. */
static int make(unsigned int nargs,
		void (*handler)(ffi_cif *, void *, void **, void *),
		union fga_fn fn, bool has_fn, void *ctx, struct fga_hook **out,
		void **code)
{
	struct fga_hook *h;
	int err;

	if (out)
		*out = NULL;
	if (code)
		*code = NULL;
	if (!has_fn || !out || !code)
		return -EINVAL;
#if FFI_CLOSURES
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->fn = fn;
	h->ctx = ctx;
	h->closure = ffi_closure_alloc(sizeof(ffi_closure), code);
	if (!h->closure) {
		err = -ENOMEM;
		goto err_hook;
	}
	h->args[0] = &ffi_type_sint;
	err = ffi_err(ffi_prep_cif(&h->cif, FFI_DEFAULT_ABI, nargs,
				   &ffi_type_void, h->args));
	if (err)
		goto err_closure;
	err = ffi_err(ffi_prep_closure_loc(h->closure, &h->cif, handler, h,
					   *code));
	if (err)
		goto err_closure;
	atomic_fetch_add_explicit(&live, 1, memory_order_relaxed);
	*out = h;
	return 0;

err_closure:
	ffi_closure_free(h->closure);
	*code = NULL;
err_hook:
	free(h);
	return err;
#else
	(void)nargs;
	(void)handler;
	(void)fn;
	(void)ctx;
	(void)h;
	(void)err;
	return -ENOSYS;
#endif
}

int fga_hook_void(void (*fn)(void *ctx), void *ctx, fga_hook **out,
		  void (**entry)(void))
{
	void *code;
	int err;

	err = make(0, call_void, (union fga_fn){.v = fn}, fn, ctx, out,
		   entry ? &code : NULL);
	if (entry)
		*entry = (void (*)(void))code;
	return err;
}

int fga_hook_int(void (*fn)(void *ctx, int arg), void *ctx, fga_hook **out,
		 void (**entry)(int))
{
	void *code;
	int err;

	err = make(1, call_int, (union fga_fn){.i = fn}, fn, ctx, out,
		   entry ? &code : NULL);
	if (entry)
		*entry = (void (*)(int))code;
	return err;
}

void fga_hook_free(fga_hook *h)
{
	if (!h)
		return;
	ffi_closure_free(h->closure);
	free(h);
	atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
}
