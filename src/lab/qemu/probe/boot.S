/*
 * pagelab probe kernel: entry, mode switch, trap stubs and the access primitive.
 *
 * QEMU's -kernel loads this as a multiboot v1 image (address fields given, so any flat binary works)
 * and enters _start32 in 32-bit protected mode, paging off. The page tables are pagelab's, loaded by
 * the harness at their physical addresses; the plan at PLAN_PA says where the root is and whether to
 * use 5-level paging. CR4.PAE (and CR4.LA57, which can only be set while paging is off) go first, then
 * CR3, EFER.LME|NXE, and CR0.PG|WP, as the SDM prescribes (Vol. 3A 10.8.5).
 *
 * run_access() performs one access (read, write, fetch or locked RMW) at CPL0 or, through iretq into
 * the user page, at CPL3. Any exception, and the int $0x80 the user page ends with, records vector,
 * error code, RIP and CR2 and returns from run_access by restoring the stack pointer it saved (a
 * longjmp), so a faulting instruction is never resumed.
 */
#define PLAN_PA 0x700000
#define PLAN_MAGIC 0x314e4c50

	.section .multiboot, "a"
	.align 4
mb_header:
	.long 0x1BADB002                 /* magic */
	.long 0x00010000                 /* flags: address fields valid */
	.long -(0x1BADB002 + 0x00010000) /* checksum */
	.long mb_header                  /* header_addr */
	.long __load_start               /* load_addr */
	.long __load_end                 /* load_end_addr */
	.long __bss_end                  /* bss_end_addr */
	.long _start32                   /* entry_addr */

	.section .boot, "ax"
	.code32
	.globl _start32
_start32:
	cli
	movl $kstack_top, %esp
	cmpl $PLAN_MAGIC, PLAN_PA
	jne no_plan
	xorl %edx, %edx
	orl $0x20, %edx                  /* CR4.PAE */
	cmpl $5, PLAN_PA + 8
	jne 1f
	pushl %edx
	movl $7, %eax
	xorl %ecx, %ecx
	cpuid
	popl %edx
	testl $(1 << 16), %ecx           /* CPUID.(7,0):ECX.LA57 */
	jz no_la57
	orl $0x1000, %edx                /* CR4.LA57 */
1:	movl %edx, %cr4
	movl PLAN_PA + 16, %eax
	movl %eax, %cr3
	movl $0xC0000080, %ecx           /* IA32_EFER */
	rdmsr
	orl $0x900, %eax                 /* LME | NXE */
	wrmsr
	movl %cr0, %eax
	orl $0x80010001, %eax            /* PG | WP | PE */
	movl %eax, %cr0
	lgdt gdt_ptr
	ljmp $0x08, $long_entry

no_plan:
	movb $2, %al
	outb %al, $0xf4
	jmp halt32
no_la57:
	movb $3, %al
	outb %al, $0xf4
halt32:
	hlt
	jmp halt32

	.code64
long_entry:
	movw $0x10, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	xorl %eax, %eax
	movw %ax, %fs
	movw %ax, %gs
	movq $kstack_top, %rsp
	call probe_main
1:	hlt
	jmp 1b

/* The user page: CPL3 code, position independent (mapped at a user address). rdi = va, rsi = kind. */
	.section .user, "ax"
	.globl user_page
user_page:
	cmpq $0, %rsi
	je 10f
	cmpq $1, %rsi
	je 11f
	cmpq $2, %rsi
	je 12f
	lock orb $0, (%rdi)
	jmp 20f
10:	movb (%rdi), %al
	jmp 20f
11:	movb $0xc3, (%rdi)
	jmp 20f
12:	call *%rdi
20:	int $0x80
	ud2

	.text
/* long run_access(long kind, u64 va, long user, u64 user_rip, u64 user_rsp, u64 user_rflags) */
	.globl run_access
run_access:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, saved_rsp(%rip)
	movq $-1, exc_vector(%rip)
	testq %rdx, %rdx
	jnz 1f
	call kernel_access
	jmp access_return
1:	pushq $0x1b                      /* SS: user data | RPL 3 */
	pushq %r8                        /* RSP */
	pushq %r9                        /* RFLAGS */
	pushq $0x23                      /* CS: user code | RPL 3 */
	pushq %rcx                       /* RIP */
	movq %rdi, %rax
	movq %rsi, %rdi
	movq %rax, %rsi
	iretq
access_return:
	movq $0, saved_rsp(%rip)
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	movq exc_vector(%rip), %rax
	ret

kernel_access:                       /* rdi = kind, rsi = va */
	cmpq $0, %rdi
	je 10f
	cmpq $1, %rdi
	je 11f
	cmpq $2, %rdi
	je 12f
	lock orb $0, (%rsi)
	ret
10:	movb (%rsi), %al
	ret
11:	movb $0xc3, (%rsi)
	ret
12:	call *%rsi
	ret

/* Exception stubs: push a zero error code where the CPU pushes none, then the vector. */
.macro ISR_NOERR v
isr\v:
	pushq $0
	pushq $\v
	jmp isr_common
.endm
.macro ISR_ERR v
isr\v:
	pushq $\v
	jmp isr_common
.endm
ISR_NOERR 0
ISR_NOERR 1
ISR_NOERR 2
ISR_NOERR 3
ISR_NOERR 4
ISR_NOERR 5
ISR_NOERR 6
ISR_NOERR 7
ISR_ERR 8
ISR_NOERR 9
ISR_ERR 10
ISR_ERR 11
ISR_ERR 12
ISR_ERR 13
ISR_ERR 14
ISR_NOERR 15
ISR_NOERR 16
ISR_ERR 17
ISR_NOERR 18
ISR_NOERR 19
ISR_NOERR 20
ISR_ERR 21
ISR_NOERR 22
ISR_NOERR 23
ISR_NOERR 24
ISR_NOERR 25
ISR_NOERR 26
ISR_NOERR 27
ISR_NOERR 28
ISR_ERR 29
ISR_ERR 30
ISR_NOERR 31
ISR_NOERR 128

isr_common:                          /* stack: vector, error, rip, cs, rflags, rsp, ss */
	movq 0(%rsp), %rax
	movq %rax, exc_vector(%rip)
	movq 8(%rsp), %rax
	movq %rax, exc_error(%rip)
	movq 16(%rsp), %rax
	movq %rax, exc_rip(%rip)
	movq %cr2, %rax
	movq %rax, exc_cr2(%rip)
	movq saved_rsp(%rip), %rax
	testq %rax, %rax
	jz 1f
	movq %rax, %rsp
	jmp access_return
1:	movq $kstack_top, %rsp           /* an exception outside run_access: report and stop */
	call probe_unexpected
2:	hlt
	jmp 2b

	.section .rodata
	.align 8
	.globl isr_table
isr_table:
	.quad isr0, isr1, isr2, isr3, isr4, isr5, isr6, isr7
	.quad isr8, isr9, isr10, isr11, isr12, isr13, isr14, isr15
	.quad isr16, isr17, isr18, isr19, isr20, isr21, isr22, isr23
	.quad isr24, isr25, isr26, isr27, isr28, isr29, isr30, isr31
	.quad isr128

	.data
	.align 16
	.globl gdt
gdt:
	.quad 0
	.quad 0x00209a0000000000         /* 0x08 kernel code, 64-bit */
	.quad 0x0000920000000000         /* 0x10 kernel data */
	.quad 0x0000f20000000000         /* 0x18 user data, DPL 3 */
	.quad 0x0020fa0000000000         /* 0x20 user code, 64-bit, DPL 3 */
	.quad 0, 0                       /* 0x28 TSS (filled by probe_main) */
gdt_end:
	.align 8
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

	.globl exc_vector, exc_error, exc_rip, exc_cr2
saved_rsp:	.quad 0
exc_vector:	.quad 0
exc_error:	.quad 0
exc_rip:	.quad 0
exc_cr2:	.quad 0

	.bss
	.align 4096
	.globl trap_stack_top
	.space 16384
kstack_top:
	.space 16384
trap_stack_top:

	.section .note.GNU-stack, "", @progbits
