/* Compiler attributes used across kestrel. */
#ifndef KESTREL_COMPILER_H
#define KESTREL_COMPILER_H

/*
 * On a function that returns 0/-errno (or a pointer that is NULL on
 * failure) where a caller that drops the result has a bug: the build
 * (-Werror) refuses such a call. A caller for whom the failure really does
 * not matter says why in a comment and wraps the call in KESTREL_IGNORE().
 */
#define KESTREL_MUST_CHECK __attribute__((warn_unused_result))

/*
 * Drop such a result on purpose, where the failure cannot happen or does not
 * matter; the call site says which in a comment. GCC does not take a plain
 * (void) cast as that.
 */
#define KESTREL_IGNORE(expr) ((void)!(expr))

#endif
