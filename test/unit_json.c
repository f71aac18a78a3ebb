/* unit_json.c -- json.c: validation, flattening, stored runs. */

/* Flatten text; return the status and leave the stored form in out. */
static int unit_json(const char *text, struct buf *out, size_t *n) {
  out->len = 0;
  *n = 12345;
  return json_flatten(text, strlen(text), out, n);
}

static void test_json_flatten(void) {
  static const struct {
    const char *in, *stored;
    size_t n;
  } t[] = {
      {"[1, {\"a\": 2} ,\"x\"]", "1,{\"a\": 2},\"x\",", 3},
      {" {\"a\":1} ", "{\"a\":1},", 1},
      {"[]", "", 0},
      {" [ ] ", "", 0},
      {"[[1,2],3]", "[1,2],3,", 2},
      {"[[]]", "[],", 1},
      {"\"a,b]\"", "\"a,b]\",", 1},
      {"[\"\\\"],\"]", "\"\\\"],\",", 1},
      {"-0.5e+3", "-0.5e+3,", 1},
      {"[true,false,null]", "true,false,null,", 3},
      {"\"\\u00e9\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
       "\"\\u00e9\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",", 1},
  };
  size_t i, n;
  struct buf out;
  memset(&out, 0, sizeof(out));
  for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    ASSERT(unit_json(t[i].in, &out, &n) == URSULA_OK);
    ASSERT(n == t[i].n);
    ASSERT_MEM(out.ptr ? out.ptr : "", out.len, t[i].stored);
  }
  buf_free(&out);
}

static void test_json_invalid(void) {
  static const char *const bad[] = {
      "", " ", "01", "-", "+1", ".5", "1.", "1e", "1e+", "0x1", "--1",
      "[1,]", "[,1]", "[1 2]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{1:2}",
      "[", "]", "{", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\u12G4\"",
      "\"a\tb\"", "\"a\nb\"", "tru", "nul", "True", "1 2", "[1]x", "{}}",
      "\"\xc0\x80\"",         /* overlong NUL */
      "\"\xc1\xbf\"",         /* overlong */
      "\"\xe0\x80\xaf\"",     /* overlong 3-byte */
      "\"\xed\xa0\x80\"",     /* UTF-16 surrogate */
      "\"\xf4\x90\x80\x80\"", /* above U+10FFFF */
      "\"\xf5\x80\x80\x80\"", /* not a lead byte */
      "\"\xc3\"",             /* truncated */
      "\"\xe2\x82\"",         /* truncated */
      "\"\x80\"",             /* lone continuation byte */
      "\xef\xbb\xbf[1]",      /* a BOM is not whitespace */
  };
  size_t i, n = 0;
  struct buf out;
  memset(&out, 0, sizeof(out));
  buf_append_str(&out, "keep,");
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = json_flatten(bad[i], strlen(bad[i]), &out, &n);
    if (rc != URSULA_EINVAL) printf("# case %u accepted\n", (unsigned)i);
    ASSERT(rc == URSULA_EINVAL);
    ASSERT_MEM(out.ptr, out.len, "keep,"); /* restored on error */
  }
  /* an error after some messages were stored also restores out */
  ASSERT(json_flatten("[1,2,x]", 7, &out, &n) == URSULA_EINVAL);
  ASSERT_MEM(out.ptr, out.len, "keep,");
  buf_free(&out);
}

static void test_json_depth(void) {
  struct buf text, out;
  size_t i, n;
  memset(&text, 0, sizeof(text));
  memset(&out, 0, sizeof(out));
  for (i = 0; i < URSULA_MAX_JSON_DEPTH; i++) buf_append_str(&text, "[");
  for (i = 0; i < URSULA_MAX_JSON_DEPTH; i++) buf_append_str(&text, "]");
  ASSERT(json_flatten(text.ptr, text.len, &out, &n) == URSULA_OK);
  ASSERT(n == 1);
  text.len = 0;
  for (i = 0; i <= URSULA_MAX_JSON_DEPTH; i++) buf_append_str(&text, "{\"k\":");
  buf_append_str(&text, "1");
  for (i = 0; i <= URSULA_MAX_JSON_DEPTH; i++) buf_append_str(&text, "}");
  ASSERT(json_flatten(text.ptr, text.len, &out, &n) == URSULA_EINVAL);
  buf_free(&text);
  buf_free(&out);
}

static void test_json_prefix_and_count(void) {
  static const char run[] = "\"a,\\\"b\",[1,[2,3]],{\"k\":\",\"},4,";
  size_t len = strlen(run);
  ASSERT(json_count(run, len) == 4);
  ASSERT(json_prefix_len(run, len, 0) == 0);
  ASSERT(json_prefix_len(run, len, 1) == 8);
  ASSERT(json_prefix_len(run, len, 2) == 8 + 10);
  ASSERT(json_prefix_len(run, len, 3) == 8 + 10 + 10);
  ASSERT(json_prefix_len(run, len, 4) == len);
  ASSERT(json_prefix_len(run, len, 5) == (size_t)-1);
  ASSERT(json_count("", 0) == 0);
}

/* A 1 MB array: every element comes out, in order. */
static void test_json_large(void) {
  struct buf text, out;
  size_t i, n = 0, count = 100000;
  memset(&text, 0, sizeof(text));
  memset(&out, 0, sizeof(out));
  buf_append_str(&text, "[");
  for (i = 0; i < count; i++) buf_printf(&text, "%s%u", i ? ", " : "", (unsigned)i);
  buf_append_str(&text, "]");
  ASSERT(json_flatten(text.ptr, text.len, &out, &n) == URSULA_OK);
  ASSERT(n == count);
  ASSERT(json_count(out.ptr, out.len) == count);
  ASSERT(out.len == text.len - 2 - 2 * (count - 1) + (count - 1) + 1);
  ASSERT(json_prefix_len(out.ptr, out.len, 11) == strlen("0,1,2,3,4,5,6,7,8,9,10,"));
  buf_free(&text);
  buf_free(&out);
}

static const struct unit_case unit_json_cases[] = {
    {"json_flatten", test_json_flatten},
    {"json_invalid", test_json_invalid},
    {"json_depth", test_json_depth},
    {"json_prefix_and_count", test_json_prefix_and_count},
    {"json_large", test_json_large},
    {NULL, NULL}};
