/*
 * file.h — opening the files an operator names (configuration, tables,
 * key files, dns-files) without ever blocking: a FIFO or a device would
 * hang open() or read() forever, so anything but a regular file is
 * refused. Thread-safe.
 */
#ifndef DKP_FILE_H
#define DKP_FILE_H

#include <stddef.h>
#include <stdio.h>

/* Open path for reading (O_CLOEXEC, O_NOCTTY, never blocking on open).
 * Returns an fd, or -errno: -EISDIR for a directory, -EINVAL for any
 * other file that is not regular (FIFO, socket, device). */
int dkp_open_regular(const char *path);

/* The same as a stdio stream ("re"); NULL with errno set. */
FILE *dkp_fopen_regular(const char *path);

/* " (not a regular file)" when e is what dkp_open_regular returns for a
 * FIFO, socket or device, else "": for appending to error messages. */
const char *dkp_open_note(int e);

/* Write p[0..n) to fd whole (again after EINTR and short writes);
 * 0, or -1 with errno set. */
int dkp_write_all(int fd, const void *p, size_t n);

#endif
