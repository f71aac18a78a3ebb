/*
** conf.c -- fuzz the config file parser (ursula_config_load), the key
** setter (ursula_config_set) and the flag parser (conf_parse_args).
**
** Input: 1 byte that picks the entry point, then its bytes: a config
** file; a key, a NUL, a value; or command-line arguments separated by
** NULs (arguments naming --config are left out: they would read files
** named by the input).  Properties:
**   - a failed call leaves the config byte for byte as it was, and its
**     message is not empty; a config file's names the file and the line
**     ("PATH:LINE: ...");
**   - whatever a call accepted reads back: each key's value, spelt as a
**     config file would spell it (conf_format), is accepted again by
**     ursula_config_set and by a config file made of those lines, and
**     gives the same value.
*/
#include "../../ursula.c"
#include "fuzz.h"

/* Each key's value in a and b, spelt out, is the same. */
static void fuzz_same_config(const struct ursula_config *a,
                             const struct ursula_config *b) {
  size_t i;
  for (i = 0; i < sizeof(conf_keys) / sizeof(conf_keys[0]); i++) {
    char x[8192], y[8192];
    conf_format(a, &conf_keys[i], x, sizeof(x));
    conf_format(b, &conf_keys[i], y, sizeof(y));
    FUZZ_CHECK(strcmp(x, y) == 0);
  }
}

/* Whether a config file line "key value" gives back exactly value (a
** flag or ursula_config_set may say more: control characters, bytes
** that are not UTF-8, blanks at the ends). */
static int fuzz_file_can_say(const char *v) {
  size_t n = strlen(v), i;
  for (i = 0; i < n; i++)
    if (((unsigned char)v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f) return 0;
  if (!conf_utf8_ok((const unsigned char *)v, n) || n > 4000) return 0;
  if (n > 0 && (v[0] == ' ' || v[0] == '\t' || v[0] == '#')) return 0;
  if (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) return 0;
  return strstr(v, " #") == NULL && strstr(v, "\t#") == NULL;
}

/* cfg reads back, key by key and through a config file. */
static void fuzz_reads_back(const struct ursula_config *cfg) {
  struct ursula_config by_set, by_file;
  struct buf file;
  char err[URSULA_ERRMSG_LEN], path[600];
  size_t i;
  memset(&file, 0, sizeof(file));
  ursula_config_init(&by_set);
  ursula_config_init(&by_file);
  for (i = 0; i < sizeof(conf_keys) / sizeof(conf_keys[0]); i++) {
    char v[8192];
    conf_format(cfg, &conf_keys[i], v, sizeof(v));
    err[0] = '\0';
    FUZZ_CHECK(ursula_config_set(&by_set, conf_keys[i].name, v, err) ==
               URSULA_OK);
    if (fuzz_file_can_say(v))
      FUZZ_CHECK(buf_printf(&file, "%s %s\n", conf_keys[i].name, v) ==
                 URSULA_OK);
    else /* not sayable in a file: set it directly */
      FUZZ_CHECK(ursula_config_set(&by_file, conf_keys[i].name, v, err) ==
                 URSULA_OK);
  }
  fuzz_same_config(cfg, &by_set);
  fuzz_write_file(fuzz_dir(), "back.conf", file.ptr, file.len);
  snprintf(path, sizeof(path), "%s/back.conf", fuzz_dir());
  err[0] = '\0';
  if (ursula_config_load(&by_file, path, err) != URSULA_OK) {
    fprintf(stderr, "reload: %s\n", err);
    FUZZ_CHECK(0);
  }
  fuzz_same_config(cfg, &by_file);
  buf_free(&file);
}

static void fuzz_file(const uint8_t *data, size_t size) {
  struct ursula_config cfg, before;
  char err[URSULA_ERRMSG_LEN], path[600];
  int rc;
  fuzz_write_file(fuzz_dir(), "in.conf", data, size);
  snprintf(path, sizeof(path), "%s/in.conf", fuzz_dir());
  ursula_config_init(&cfg);
  before = cfg;
  err[0] = '\0';
  rc = ursula_config_load(&cfg, path, err);
  if (rc != URSULA_OK) {
    FUZZ_CHECK(rc == URSULA_EINVAL);
    FUZZ_CHECK(memcmp(&cfg, &before, sizeof(cfg)) == 0);
    /* "PATH:LINE: reason" */
    FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0);
    FUZZ_CHECK(err[strlen(path)] == ':');
    FUZZ_CHECK(err[strlen(path) + 1] >= '1' && err[strlen(path) + 1] <= '9');
    return;
  }
  fuzz_reads_back(&cfg);
}

static void fuzz_set(const uint8_t *data, size_t size) {
  struct ursula_config cfg, before;
  char err[URSULA_ERRMSG_LEN];
  char *kv = (char *)malloc(size + 2);
  int rc;
  FUZZ_CHECK(kv != NULL);
  memcpy(kv, data, size);
  kv[size] = kv[size + 1] = '\0';
  ursula_config_init(&cfg);
  before = cfg;
  err[0] = '\0';
  /* the key ends at the first NUL, the value at the next */
  rc = ursula_config_set(&cfg, kv, kv + strlen(kv) + 1, err);
  if (rc != URSULA_OK) {
    FUZZ_CHECK(rc == URSULA_EINVAL && err[0] != '\0');
    FUZZ_CHECK(memcmp(&cfg, &before, sizeof(cfg)) == 0);
  } else {
    fuzz_reads_back(&cfg);
  }
  free(kv);
}

static void fuzz_args(const uint8_t *data, size_t size) {
  struct ursula_config cfg, before;
  char err[URSULA_ERRMSG_LEN];
  char *all = (char *)malloc(size + 1), *argv[64];
  size_t at = 0;
  int argc = 0, rc;
  FUZZ_CHECK(all != NULL);
  memcpy(all, data, size);
  all[size] = '\0';
  argv[argc++] = (char *)"ursula";
  while (at <= size && argc < 63) {
    argv[argc] = all + at;
    if (strstr(argv[argc], "config") != NULL) goto done;
    at += strlen(all + at) + 1;
    argc++;
  }
  argv[argc] = NULL;
  ursula_config_init(&cfg);
  before = cfg;
  err[0] = '\0';
  rc = conf_parse_args(&cfg, argc, argv, NULL, err);
  if (rc == CONF_RUN) {
    fuzz_reads_back(&cfg);
  } else {
    FUZZ_CHECK(rc == CONF_HELP || rc == CONF_VERSION || rc == URSULA_EINVAL);
    if (rc == URSULA_EINVAL) FUZZ_CHECK(err[0] != '\0');
    FUZZ_CHECK(memcmp(&cfg, &before, sizeof(cfg)) == 0);
  }
done:
  free(all);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  switch (data[0] % 3) {
    case 0:
      fuzz_file(data + 1, size - 1);
      break;
    case 1:
      fuzz_set(data + 1, size - 1);
      break;
    default:
      fuzz_args(data + 1, size - 1);
      break;
  }
  return 0;
}
