/* stub.S - the guest's whole ring-0 code, copied into the VMM page.
 *
 * A few instructions, no SSE/AVX (PVM emulates every ring-0 instruction,
 * at about a microsecond each), position independent (it is copied).
 * Every way into ring 0 leaves at once through an `out` to a port that
 * says why; the host then points the vCPU at fgvm_stub_ret with RSP on a
 * frame it wrote on the ring-0 stack: {rax, rip, cs, rflags, rsp, ss}.
 *
 *   syscall (LSTAR): RSP is still the program's: nothing is pushed.
 *   exception N:     the CPU pushed [error code,] rip, cs, rflags, rsp, ss
 *                    on the ring-0 stack (TSS.RSP0).  #PF also pushes RAX
 *                    and passes CR2 in RAX.
 */
	.section .rodata.fgvm_stub, "a"
	.code64
	.balign 64
	.globl fgvm_stub_start, fgvm_stub_end
	.globl fgvm_stub_syscall, fgvm_stub_ret, fgvm_stub_exc
	.globl fgvm_tramp_start, fgvm_tramp_end

fgvm_stub_start:
fgvm_stub_syscall:
	outb	%al, $0x10
	hlt

	.balign 16
fgvm_stub_ret:
	popq	%rax
	iretq

.macro exc n
	.balign 16
	.if \n == 14
	pushq	%rax
	movq	%cr2, %rax
	.endif
	outb	%al, $(0x20 + \n)
	hlt
.endm

	.balign 16
fgvm_stub_exc:
	exc 0
	exc 1
	exc 2
	exc 3
	exc 4
	exc 5
	exc 6
	exc 7
	exc 8
	exc 9
	exc 10
	exc 11
	exc 12
	exc 13
	exc 14
	exc 15
	exc 16
	exc 17
	exc 18
	exc 19
	exc 20
	exc 21
	exc 22
	exc 23
	exc 24
	exc 25
	exc 26
	exc 27
	exc 28
	exc 29
	exc 30
	exc 31
fgvm_stub_end:

/* The syscall trampoline, on a user page of its own.  Where `syscall`
 * does not enter ring 0 (PVM jumps to LSTAR in user mode, and has no
 * `int N` from there), LSTAR points here and an exception does it: the
 * #UD stub exits, and the VM sees #UD at this address as a syscall. */
	.balign 16
fgvm_tramp_start:
	ud2
	hlt
fgvm_tramp_end:

	.section .note.GNU-stack, "", @progbits
