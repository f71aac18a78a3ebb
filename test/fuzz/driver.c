/*
** driver.c -- a main() for the harnesses without libFuzzer (make
** fuzz-regress): every argument is a file, or a directory whose files
** (not recursively; names starting with '.' skipped) are each run once
** through LLVMFuzzerTestOneInput, in name order.  A directory that does
** not exist is skipped (a harness may have no regression inputs yet).
** Exits 0 when every input ran; a failed property aborts (FUZZ_CHECK) or
** a sanitizer stops the process, and the input being run is named on
** stderr (a SIGABRT handler and the sanitizers' death callback).  With
** FUZZ_VERBOSE set in the environment every input is named as it runs.
*/
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The sanitizers' hook, when they are linked in. */
void __sanitizer_set_death_callback(void (*callback)(void))
    __attribute__((weak));

static const char *driver_current; /* the input being run */

static void driver_name_input(void) {
  if (driver_current != NULL) {
    static const char a[] = "driver: the failing input: ";
    ssize_t w = write(2, a, sizeof(a) - 1);
    w = write(2, driver_current, strlen(driver_current));
    w = write(2, "\n", 1);
    (void)w;
  }
}

static void driver_on_abort(int sig) {
  driver_name_input();
  signal(sig, SIG_DFL);
  raise(sig);
}

static int driver_run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  unsigned char *p = NULL;
  size_t n = 0, cap = 0, k;
  if (f == NULL) {
    fprintf(stderr, "driver: %s: %s\n", path, strerror(errno));
    return -1;
  }
  for (;;) {
    if (n == cap) {
      unsigned char *q;
      cap = cap ? cap * 2 : 4096;
      q = (unsigned char *)realloc(p, cap);
      if (q == NULL) {
        fclose(f);
        free(p);
        return -1;
      }
      p = q;
    }
    k = fread(p + n, 1, cap - n, f);
    if (k == 0) break;
    n += k;
  }
  fclose(f);
  if (getenv("FUZZ_VERBOSE") != NULL)
    fprintf(stderr, "driver: %s (%lu bytes)\n", path, (unsigned long)n);
  driver_current = path;
  /* an exact-size copy, so that a read past the input is seen by ASan */
  {
    unsigned char *exact = (unsigned char *)malloc(n > 0 ? n : 1);
    if (exact == NULL) {
      free(p);
      return -1;
    }
    if (n > 0) memcpy(exact, p, n);
    free(p);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
  }
  driver_current = NULL;
  return 0;
}

static int driver_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int driver_run_dir(const char *dir, int *count) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char **names = NULL;
  size_t n = 0, cap = 0, i;
  int rc = 0;
  if (d == NULL) return errno == ENOENT ? 0 : -1;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (n == cap) {
      char **q;
      cap = cap ? cap * 2 : 64;
      q = (char **)realloc(names, cap * sizeof(*names));
      if (q == NULL) break;
      names = q;
    }
    names[n] = (char *)malloc(strlen(dir) + strlen(e->d_name) + 2);
    if (names[n] == NULL) break;
    sprintf(names[n], "%s/%s", dir, e->d_name);
    n++;
  }
  closedir(d);
  if (n > 0) qsort(names, n, sizeof(*names), driver_cmp);
  for (i = 0; i < n; i++) {
    struct stat sb;
    if (rc == 0 && stat(names[i], &sb) == 0 && S_ISREG(sb.st_mode)) {
      if (driver_run_file(names[i]) != 0) rc = -1;
      (*count)++;
    }
    free(names[i]);
  }
  free(names);
  return rc;
}

int main(int argc, char **argv) {
  int i, count = 0;
  signal(SIGABRT, driver_on_abort);
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(driver_name_input);
  for (i = 1; i < argc; i++) {
    struct stat sb;
    if (stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
      if (driver_run_dir(argv[i], &count) != 0) return 1;
    } else if (stat(argv[i], &sb) == 0) {
      if (driver_run_file(argv[i]) != 0) return 1;
      count++;
    } else if (errno != ENOENT) {
      fprintf(stderr, "driver: %s: %s\n", argv[i], strerror(errno));
      return 1;
    }
  }
  printf("%s: %d inputs replayed\n", argc > 0 ? argv[0] : "driver", count);
  return 0;
}
