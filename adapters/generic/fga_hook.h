/* fga_hook.h - bind a runtime's context-less hook slot to an adapter instance.
 *
 * Many collectors take a callback with no context pointer: Boehm's
 * GC_set_start_callback(void (*)(void)) and GC_set_on_collection_event(
 * void (*)(GC_EventType)), Racket BC's GC_set_collect_start_callback(
 * void (*)(void)).  With one adapter instance per heap (per place, per
 * isolate), a static function cannot tell which instance an event is for.
 * A hook is a libffi closure: a fresh function pointer, made at run time,
 * that calls fn(ctx[, arg]).  Store the entry in the slot; every call of
 * the entry is a call of fn with the ctx it was made with.
 *
 *	fga_hook *h;
 *	void (*entry)(void);
 *	int err = fga_hook_void(on_start, inst, &h, &entry);
 *	if (err)
 *		return err;
 *	GC_set_start_callback(entry);
 *	...
 *	GC_set_start_callback(0);	// the runtime no longer calls entry
 *	fga_hook_free(h);
 *
 * Results: 0 on success, a negative errno value on failure; nothing is
 * printed.
 *   -EINVAL   fn, out or entry is NULL (or libffi refused the signature);
 *   -ENOMEM   no memory for the hook, or libffi could not allocate the
 *             closure (it may need executable memory, which a W^X policy
 *             such as SELinux's deny_execmem refuses);
 *   -ENOTSUP  libffi does not support the platform's default ABI;
 *   -ENOSYS   this libffi has no closures on this platform.
 * On failure *out and *entry are set to NULL when those pointers are not
 * NULL, so that a caller may always pass *out to fga_hook_free().
 *
 * Calling convention: the entry uses the platform's default C convention
 * (libffi's FFI_DEFAULT_ABI), as the runtimes' GC_CALLBACK and plain
 * function pointers do on Linux.  A slot whose parameter is an enum (Boehm's
 * GC_EventType) takes fga_hook_int's entry cast to the slot's type: the enum
 * is passed as an int-sized integer in the same register; fn receives its
 * value as int.
 *
 * Context: making and freeing hooks allocate and may take libffi's lock;
 * do it outside the runtime's callbacks.  Calling an entry allocates
 * nothing and takes no lock (libffi's closure dispatch runs on the stack),
 * so an entry may be called wherever fn itself may be: with the runtime's
 * allocation lock held, with the world stopped, in a signal handler if fn
 * is async-signal-safe.  Hooks are independent: any number may be live,
 * made and freed from any thread.
 *
 * Lifetime: fga_hook_free() must come after the runtime has stopped
 * calling the entry (the slot cleared or replaced, and no call of it still
 * running); calling a freed entry jumps into freed memory.
 */
#ifndef FGA_HOOK_H
#define FGA_HOOK_H

#ifdef __cplusplus
extern "C" {
#endif

#ifndef FGA_API /* as in fga.h */
#define FGA_API __attribute__((visibility("default")))
#endif

typedef struct fga_hook fga_hook;

/* Make *entry, a void (*)(void) that calls fn(ctx).  fn != NULL, out !=
 * NULL, entry != NULL; ctx is passed through untouched (NULL allowed). */
FGA_API int fga_hook_void(void (*fn)(void *ctx), void *ctx, fga_hook **out,
			  void (**entry)(void));

/* Make *entry, a void (*)(int) that calls fn(ctx, arg) with the int it is
 * called with.  Same preconditions as fga_hook_void(). */
FGA_API int fga_hook_int(void (*fn)(void *ctx, int arg), void *ctx,
			 fga_hook **out, void (**entry)(int));

/* Free a hook and its closure.  NULL is a no-op.  Only once the runtime no
 * longer calls the hook's entry (above). */
FGA_API void fga_hook_free(fga_hook *h);

/* Hooks made and not yet freed, in the whole process: 0 after a clean
 * teardown.  For tests and leak checks; atomic, any thread. */
FGA_API unsigned long fga_hook_live(void);

#ifdef __cplusplus
}
#endif

#endif /* FGA_HOOK_H */
