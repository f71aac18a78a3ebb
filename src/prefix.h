/*
** prefix.h -- feature-test macros.  Must come before any system header, so
** it is the first part of the amalgamation.
*/
#ifndef URSULA_PREFIX_H
#define URSULA_PREFIX_H
#if !defined(_WIN32)
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif
#if defined(__APPLE__) && !defined(_DARWIN_C_SOURCE)
#define _DARWIN_C_SOURCE 1 /* F_FULLFSYNC, SO_NOSIGPIPE */
#endif
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE 1 /* epoll, accept4-free paths, MSG_NOSIGNAL */
#endif
#endif
#endif
