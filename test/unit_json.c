/* unit_json.c -- json.c: validation, flattening, stored runs. */

/* Flatten in[0..len) into out after the "keep," already there.  Returns
** json_flatten()'s status; *n is untouched (12345) on failure. */
static int unit_json_run(const char *in, size_t len, struct buf *out,
                         size_t *n) {
  out->len = 0;
  ASSERT(buf_append_str(out, "keep,") == URSULA_OK);
  *n = 12345;
  return json_flatten(in, len, out, n);
}

static void test_json_valid(void) {
  static const struct {
    const char *in, *stored;
    size_t n;
  } t[] = {
      /* the examples of the protocol */
      {"[1, {\"a\": 2} ,\"x\"]", "1,{\"a\": 2},\"x\",", 3},
      {" {\"a\":1} ", "{\"a\":1},", 1},
      {"[[1,2],3]", "[1,2],3,", 2},
      {"[]", "", 0},
      {" \t[ \r\n ]\n", "", 0},
      /* scalars are one message */
      {"0", "0,", 1},
      {"-0", "-0,", 1},
      {"1.5", "1.5,", 1},
      {"-0.5e+3", "-0.5e+3,", 1},
      {"1E10", "1E10,", 1},
      {"1e-2", "1e-2,", 1},
      {"10.01E+0", "10.01E+0,", 1},
      {"123456789012345678901234567890", "123456789012345678901234567890,", 1},
      {"true", "true,", 1},
      {"false", "false,", 1},
      {"\r\nnull\t", "null,", 1},
      {"\"\"", "\"\",", 1},
      {"{}", "{},", 1},
      {"{ }", "{ },", 1},
      /* one level only; inner whitespace kept, outer trimmed */
      {"[[]]", "[],", 1},
      {"[ [ ] , { } ]", "[ ],{ },", 2},
      {"[\t1\r\n,\n2 ]", "1,2,", 2},
      {"[[1, [2, 3]], {\"k\": [4, {\"j\": null}]}]",
       "[1, [2, 3]],{\"k\": [4, {\"j\": null}]},", 2},
      {"{\"a\": [1, 2], \"b\": {\"c\": \"d\"}}",
       "{\"a\": [1, 2], \"b\": {\"c\": \"d\"}},", 1},
      {"[true,false,null,0,\"\"]", "true,false,null,0,\"\",", 5},
      {"[{\"\":\"\"}]", "{\"\":\"\"},", 1},
      /* commas and brackets inside strings are not structure */
      {"\"a,b]\"", "\"a,b]\",", 1},
      {"[\"a,b\", \"]\", \"[{\"]", "\"a,b\",\"]\",\"[{\",", 3},
      {"[\"\\\"],\"]", "\"\\\"],\",", 1},
      {"[\"\\\\\",1]", "\"\\\\\",1,", 2},
      /* every escape */
      {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\",", 1},
      {"\"\\u0000\\u00e9\\uABCD\\uFFFF\"", "\"\\u0000\\u00e9\\uABCD\\uFFFF\",",
       1},
      {"\"\\uD83D\\uDE00\"", "\"\\uD83D\\uDE00\",", 1},
      {"\"\\uD800\"", "\"\\uD800\",", 1}, /* unpaired: accepted */
      {"\"\\uDFFF x\"", "\"\\uDFFF x\",", 1},
      /* DEL is no control character to JSON */
      {"\"\x7f\"", "\"\x7f\",", 1},
      /* UTF-8 at the edges of each length and around the surrogates */
      {"\"\xc2\x80\xdf\xbf\"", "\"\xc2\x80\xdf\xbf\",", 1},
      {"\"\xe0\xa0\x80\xef\xbf\xbf\"", "\"\xe0\xa0\x80\xef\xbf\xbf\",", 1},
      {"\"\xed\x9f\xbf\xee\x80\x80\"", "\"\xed\x9f\xbf\xee\x80\x80\",", 1},
      {"\"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"",
       "\"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\",", 1},
      {"[\"\xc3\xa9\", {\"\xe2\x82\xac\": \"\xf0\x9f\x98\x80\"}]",
       "\"\xc3\xa9\",{\"\xe2\x82\xac\": \"\xf0\x9f\x98\x80\"},", 2},
  };
  size_t i, n;
  struct buf out, again;
  memset(&out, 0, sizeof(out));
  memset(&again, 0, sizeof(again));
  for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    size_t len = strlen(t[i].in), n2 = 0;
    int rc = unit_json_run(t[i].in, len, &out, &n);
    if (rc != URSULA_OK) printf("# valid case %u rejected\n", (unsigned)i);
    ASSERT(rc == URSULA_OK);
    ASSERT(n == t[i].n);
    ASSERT(out.len >= 5 && memcmp(out.ptr, "keep,", 5) == 0);
    ASSERT_MEM(out.ptr + 5, out.len - 5, t[i].stored);
    ASSERT(out.ptr[out.len] == '\0');
    ASSERT(json_count(out.ptr + 5, out.len - 5) == t[i].n);
    ASSERT(json_prefix_len(out.ptr + 5, out.len - 5, t[i].n) == out.len - 5);
    /* What a reader serves ('[' + stored minus its last ',' + ']') is
    ** valid JSON that flattens back to the same messages. */
    if (t[i].n == 0) continue;
    again.len = 0;
    ASSERT(buf_append_str(&again, "[") == URSULA_OK);
    ASSERT(buf_append(&again, out.ptr + 5, out.len - 6) == URSULA_OK);
    ASSERT(buf_append_str(&again, "]") == URSULA_OK);
    out.len = 0;
    ASSERT(json_flatten(again.ptr, again.len, &out, &n2) == URSULA_OK);
    ASSERT(n2 == t[i].n);
    ASSERT_MEM(out.ptr, out.len, t[i].stored);
  }
  buf_free(&out);
  buf_free(&again);
}

static void test_json_invalid(void) {
  static const char *const bad[] = {
      /* empty, or whitespace JSON does not have */
      "",
      " ",
      "\t\r\n",
      "\f1",
      "1\v",
      "\xc2\xa0\x31",
      "[1,\f2]",
      "\xef\xbb\xbf[1]", /* a BOM */
      /* literals */
      "tru",
      "nul",
      "fals",
      "True",
      "NULL",
      "truex",
      "nulll",
      "nan",
      "NaN",
      "Infinity",
      "-Infinity",
      "undefined",
      "[t]",
      /* numbers */
      "01",
      "-01",
      "00",
      "+1",
      ".5",
      "-.5",
      "1.",
      "-",
      "--1",
      "- 1",
      "1e",
      "1e+",
      "1E-",
      "1e5.5",
      "1.2.3",
      "0x10",
      "1_000",
      "[01]",
      "[1.]",
      "[-]",
      "{\"a\":01}",
      /* strings */
      "\"abc",
      "\"",
      "\"\\\"",
      "\"abc\\",
      "'a'",
      "\"\\x\"",
      "\"\\a\"",
      "\"\\0\"",
      "\"\\U0041\"",
      "\"\\u\"",
      "\"\\u12\"",
      "\"\\u12G4\"",
      "\"\\u-123\"",
      "\"\\\xc3\xa9\"",
      "\"a\tb\"",
      "\"a\nb\"",
      "\"\x01\"",
      "\"\x1f\"",
      "\"\x1b[0m\"",
      /* UTF-8 */
      "\"\xc0\x80\"",                 /* overlong NUL */
      "\"\xc1\xbf\"",                 /* overlong U+007F */
      "\"\xe0\x80\x80\"",             /* overlong 3-byte */
      "\"\xe0\x9f\xbf\"",             /* overlong U+07FF */
      "\"\xf0\x8f\xbf\xbf\"",         /* overlong U+FFFF */
      "\"\xed\xa0\x80\"",             /* surrogate U+D800 */
      "\"\xed\xbf\xbf\"",             /* surrogate U+DFFF */
      "\"\xed\xa0\xbd\xed\xb8\x80\"", /* CESU-8 pair */
      "\"\xf4\x90\x80\x80\"",         /* U+110000 */
      "\"\xf5\x80\x80\x80\"",         /* lead byte past U+10FFFF */
      "\"\xf8\x88\x80\x80\x80\"",     /* 5-byte form */
      "\"\xfe\"",
      "\"\xff\"", /* never in UTF-8 */
      "\"\x80\"",
      "\"\xbf\"", /* lone continuation bytes */
      "\"\xc3\"",
      "\"\xe2\x82\"",
      "\"\xf0\x9f\x98\"", /* truncated */
      "\"\xc3",
      "\"\xe2\x82",
      "\"\xf0\x9f\x98", /* cut by the end */
      "\"\xc3\x28\"",
      "\"\xe2\x28\xa1\"",
      "\"\xf0\x9f\x98\xc3\xa9\"",
      "\xc3\xa9",
      "[\xc3\xa9]",
      "{\xc3\xa9:1}", /* outside strings */
      /* arrays */
      "[",
      "]",
      "[1",
      "[1,",
      "[1,]",
      "[,1]",
      "[,]",
      "[1 2]",
      "[1,,2]",
      "[1}",
      "[[]",
      "[]]",
      "[1]]",
      "[1:2]",
      /* objects */
      "{",
      "}",
      "{\"a\"}",
      "{\"a\":}",
      "{\"a\" 1}",
      "{\"a\":1,}",
      "{,}",
      "{a:1}",
      "{1:2}",
      "{'a':1}",
      "{\"a\":1 \"b\":2}",
      "{\"a\":1]",
      "{\"a\",1}",
      "{\"a\"::1}",
      "{[]:1}",
      "{\"a\":1",
      "{}}",
      /* more than one value, or anything after it */
      "1 2",
      "[1]x",
      "[1] [2]",
      "\"a\"\"b\"",
      "1,",
      "[1],",
      ",1",
      "{\"a\":1}{}",
      "null null",
      /* comments are not JSON */
      "/*x*/1",
      "1 // c",
      "[1,/*x*/2]",
      "# c\n1",
      /* errors after elements were stored */
      "[1,2,x]",
      "[1,2,3",
      "[\"a\",{\"b\":1},[2],oops]",
  };
  size_t i, n = 0;
  struct buf out;
  memset(&out, 0, sizeof(out));
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = unit_json_run(bad[i], strlen(bad[i]), &out, &n);
    if (rc != URSULA_EINVAL)
      printf("# invalid case %u accepted\n", (unsigned)i);
    ASSERT(rc == URSULA_EINVAL);
    ASSERT(n == 12345);
    ASSERT_MEM(out.ptr, out.len, "keep,"); /* restored on error */
    ASSERT(out.ptr[out.len] == '\0');
  }
  /* NUL bytes, which strlen() cannot carry */
  ASSERT(unit_json_run("\"a\0b\"", 5, &out, &n) == URSULA_EINVAL);
  ASSERT(unit_json_run("1\0", 2, &out, &n) == URSULA_EINVAL);
  ASSERT(unit_json_run("[1,\0]", 5, &out, &n) == URSULA_EINVAL);
  ASSERT(unit_json_run("\0", 1, &out, &n) == URSULA_EINVAL);
  ASSERT_MEM(out.ptr, out.len, "keep,");
  /* the length is honoured: valid bytes past it are not looked at */
  ASSERT(unit_json_run("[1,2]", 4, &out, &n) == URSULA_EINVAL);
  ASSERT(unit_json_run("\"ab\"", 3, &out, &n) == URSULA_EINVAL);
  ASSERT(unit_json_run("true", 3, &out, &n) == URSULA_EINVAL);
  ASSERT(unit_json_run("[1,2]x", 5, &out, &n) == URSULA_OK && n == 2);
  ASSERT_MEM(out.ptr, out.len, "keep,1,2,");
  buf_free(&out);
}

/* The flattening appends to what out holds, and an error leaves it as it
** was, even when out starts empty and unallocated. */
static void test_json_append_restore(void) {
  struct buf out;
  size_t n = 0;
  memset(&out, 0, sizeof(out));
  ASSERT(json_flatten("[1,x]", 5, &out, &n) == URSULA_EINVAL);
  ASSERT(out.len == 0);
  ASSERT(json_flatten("[1, 2]", 6, &out, &n) == URSULA_OK && n == 2);
  ASSERT(json_flatten(" \"s\" ", 5, &out, &n) == URSULA_OK && n == 1);
  ASSERT(json_flatten("[]", 2, &out, &n) == URSULA_OK && n == 0);
  ASSERT_MEM(out.ptr, out.len, "1,2,\"s\",");
  ASSERT(json_flatten("[3,4,[5,]]", 10, &out, &n) == URSULA_EINVAL);
  ASSERT(json_flatten("{\"a\":", 5, &out, &n) == URSULA_EINVAL);
  ASSERT_MEM(out.ptr, out.len, "1,2,\"s\",");
  ASSERT(n == 0);
  ASSERT(json_count(out.ptr, out.len) == 3);
  buf_free(&out);
}

/* Text nested `depth` deep: arrays, objects, or both in turn. */
static void unit_json_nest(struct buf *b, size_t depth, int kind) {
  size_t i;
  b->len = 0;
  for (i = 0; i < depth; i++) {
    int obj = kind == 1 || (kind == 2 && i % 2 == 1);
    ASSERT(buf_append_str(b, obj ? "{\"k\": " : "[") == URSULA_OK);
  }
  ASSERT(buf_append_str(b, "0") == URSULA_OK);
  for (i = depth; i-- > 0;) {
    int obj = kind == 1 || (kind == 2 && i % 2 == 1);
    ASSERT(buf_append_str(b, obj ? "}" : "]") == URSULA_OK);
  }
}

static void test_json_depth(void) {
  const size_t max = URSULA_MAX_JSON_DEPTH;
  struct buf text, out;
  size_t n, i;
  int kind;
  memset(&text, 0, sizeof(text));
  memset(&out, 0, sizeof(out));
  for (kind = 0; kind < 3; kind++) {
    unit_json_nest(&text, max, kind);
    out.len = 0;
    ASSERT(json_flatten(text.ptr, text.len, &out, &n) == URSULA_OK);
    ASSERT(n == 1);
    /* an array at the top stores its element, one level less */
    if (kind != 1) ASSERT(out.len == text.len - 2 + 1);
    if (kind == 1) ASSERT(out.len == text.len + 1);
    unit_json_nest(&text, max + 1, kind);
    out.len = 0;
    ASSERT(json_flatten(text.ptr, text.len, &out, &n) == URSULA_EINVAL);
    ASSERT(out.len == 0);
  }
  /* empty containers count too */
  text.len = 0;
  for (i = 0; i < max; i++) ASSERT(buf_append_str(&text, "[") == 0);
  for (i = 0; i < max; i++) ASSERT(buf_append_str(&text, "]") == 0);
  ASSERT(json_flatten(text.ptr, text.len, &out, &n) == URSULA_OK);
  text.len = 0;
  for (i = 0; i <= max; i++) ASSERT(buf_append_str(&text, "{\"\":") == 0);
  ASSERT(buf_append_str(&text, "{}") == 0);
  for (i = 0; i <= max; i++) ASSERT(buf_append_str(&text, "}") == 0);
  ASSERT(json_flatten(text.ptr, text.len, &out, &n) == URSULA_EINVAL);
  /* depth is given back on close: many siblings, each max - 1 inside the
  ** top array, are fine */
  text.len = 0;
  ASSERT(buf_append_str(&text, "[") == 0);
  for (i = 0; i < 50; i++) {
    struct buf one;
    memset(&one, 0, sizeof(one));
    unit_json_nest(&one, max - 1, 2);
    if (i > 0) ASSERT(buf_append_str(&text, ",") == 0);
    ASSERT(buf_append(&text, one.ptr, one.len) == 0);
    buf_free(&one);
  }
  ASSERT(buf_append_str(&text, "]") == 0);
  out.len = 0;
  ASSERT(json_flatten(text.ptr, text.len, &out, &n) == URSULA_OK);
  ASSERT(n == 50 && json_count(out.ptr, out.len) == 50);
  /* hostile nesting is refused without recursion */
  text.len = 0;
  for (i = 0; i < 1000000; i++) ASSERT(buf_append_str(&text, "[") == 0);
  ASSERT(json_flatten(text.ptr, text.len, &out, &n) == URSULA_EINVAL);
  buf_free(&text);
  buf_free(&out);
}

static void test_json_prefix_count(void) {
  /* messages: "a,\"b"  [1,[2,3]]  {"k":",]}"}  "\\"  4  "[{"  {} */
  static const char run[] =
      "\"a,\\\"b\",[1,[2,3]],{\"k\":\",]}\"},\"\\\\\",4,\"[{\",{},";
  static const size_t ends[] = {0, 8, 18, 30, 35, 37, 42, 45};
  size_t len = strlen(run), i;
  ASSERT(len == 45);
  ASSERT(json_count(run, len) == 7);
  for (i = 0; i < 8; i++) {
    ASSERT(json_prefix_len(run, len, i) == ends[i]);
    /* a stored run may be cut at any message end */
    ASSERT(json_count(run, ends[i]) == i);
    ASSERT(json_prefix_len(run + ends[i], len - ends[i], 7 - i) ==
           len - ends[i]);
  }
  ASSERT(json_prefix_len(run, len, 8) == (size_t)-1);
  ASSERT(json_prefix_len(run, len, (size_t)-1) == (size_t)-1);
  ASSERT(json_prefix_len(run, len - 1, 7) == (size_t)-1);
  ASSERT(json_count(run, len - 1) == 6);
  ASSERT(json_count("", 0) == 0);
  ASSERT(json_prefix_len("", 0, 0) == 0);
  ASSERT(json_prefix_len("", 0, 1) == (size_t)-1);
  ASSERT(json_count("[],", 3) == 1);
  ASSERT(json_prefix_len("\"\\\\\",\",\",", 9, 1) == 5);
}

/* Every prefix of valid texts: never a crash, never a read past the end
** (ASan), and what is accepted is consistent. */
static void test_json_truncated(void) {
  static const char *const in[] = {
      "[1, {\"a\": [true, false, null]} ,\"x\\u00e9\\n\", -1.5e+10]",
      "{\"k\": \"\xe2\x82\xac\xf0\x9f\x98\x80\", \"l\": [[], {}]}",
      "\"\xc3\xa9\xed\x9f\xbf\\\"\"",
  };
  size_t i, cut, n;
  struct buf out;
  memset(&out, 0, sizeof(out));
  for (i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
    size_t len = strlen(in[i]);
    for (cut = 0; cut <= len; cut++) {
      int rc;
      /* an exact-size heap copy, so a read past cut is caught */
      char *p = (char *)URSULA_MALLOC(cut ? cut : 1);
      ASSERT(p != NULL);
      if (p == NULL) break;
      memcpy(p, in[i], cut);
      rc = unit_json_run(p, cut, &out, &n);
      if (cut == len) ASSERT(rc == URSULA_OK);
      if (rc == URSULA_OK)
        ASSERT(json_count(out.ptr + 5, out.len - 5) == n);
      else
        ASSERT(rc == URSULA_EINVAL && out.len == 5);
      URSULA_FREE(p);
    }
  }
  buf_free(&out);
}

/* A 1 MB array of assorted elements: all come out, in order; the stored
** run is walked back with json_prefix_len. */
static void test_json_large(void) {
  static const char *const kinds[] = {
      "%u",
      "\"s,%u]\"",
      "{\"k\": [%u, \"}\"]}",
      "[\"\\\"\", %u]",
  };
  const size_t count = 80000;
  struct buf text, out, want;
  size_t i, n = 0, at = 0;
  memset(&text, 0, sizeof(text));
  memset(&out, 0, sizeof(out));
  memset(&want, 0, sizeof(want));
  ASSERT(buf_append_str(&text, "[") == URSULA_OK);
  for (i = 0; i < count; i++) {
    const char *fmt = kinds[i % 4];
    ASSERT(buf_append_str(&text, i ? " ,\n " : "") == URSULA_OK);
    ASSERT(buf_printf(&text, fmt, (unsigned)i) == URSULA_OK);
    ASSERT(buf_printf(&want, fmt, (unsigned)i) == URSULA_OK);
    ASSERT(buf_append_str(&want, ",") == URSULA_OK);
  }
  ASSERT(buf_append_str(&text, "]") == URSULA_OK);
  ASSERT(text.len > 1000000);
  ASSERT(json_flatten(text.ptr, text.len, &out, &n) == URSULA_OK);
  ASSERT(n == count);
  ASSERT(out.len == want.len && memcmp(out.ptr, want.ptr, want.len) == 0);
  ASSERT(json_count(out.ptr, out.len) == count);
  ASSERT(json_prefix_len(out.ptr, out.len, count) == out.len);
  ASSERT(json_prefix_len(out.ptr, out.len, count + 1) == (size_t)-1);
  for (i = 0; i < 1000; i++) {
    size_t k = json_prefix_len(out.ptr + at, out.len - at, 1);
    ASSERT(k != (size_t)-1 && k > 1 && out.ptr[at + k - 1] == ',');
    if (k == (size_t)-1) break;
    at += k;
  }
  ASSERT(json_count(out.ptr + at, out.len - at) == count - 1000);
  /* one big string, and a big object, are one message each */
  text.len = 0;
  ASSERT(buf_append_str(&text, "\"") == URSULA_OK);
  for (i = 0; i < 100000; i++)
    ASSERT(buf_append_str(&text, "ab,\\\"\xc3\xa9[\xe2\x82\xac") == 0);
  ASSERT(buf_append_str(&text, "\"") == URSULA_OK);
  out.len = 0;
  ASSERT(json_flatten(text.ptr, text.len, &out, &n) == URSULA_OK);
  ASSERT(n == 1 && out.len == text.len + 1);
  ASSERT(json_count(out.ptr, out.len) == 1);
  buf_free(&text);
  buf_free(&out);
  buf_free(&want);
}

/* json_put_string: RFC 8259 section 7 -- '"', '\\' and the controls
** U+0000..U+001F must be escaped; we also escape DEL; every other byte
** (UTF-8 included) goes as it is.  The result must be valid JSON, and
** json_string_value must give the input back. */
static void test_json_put_string(void) {
  struct buf out, back;
  struct str raw;
  const char in[] = "a\"b\\c\n\x01\x1f\x7f \xc3\xa9/";
  const char want[] = "\"a\\\"b\\\\c\\u000a\\u0001\\u001f\\u007f \xc3\xa9/\"";
  memset(&out, 0, sizeof(out));
  memset(&back, 0, sizeof(back));
  ASSERT(json_put_string(&out, in) == URSULA_OK);
  ASSERT(out.len == sizeof(want) - 1 && memcmp(out.ptr, want, out.len) == 0);
  ASSERT(json_check(out.ptr, out.len) == URSULA_OK);
  raw.ptr = out.ptr;
  raw.len = out.len;
  ASSERT(json_string_value(raw, &back) == URSULA_OK);
  ASSERT(back.len == sizeof(in) - 1 && memcmp(back.ptr, in, back.len) == 0);
  out.len = 0;
  ASSERT(json_put_string(&out, "") == URSULA_OK);
  ASSERT(out.len == 2 && memcmp(out.ptr, "\"\"", 2) == 0);
  buf_free(&out);
  buf_free(&back);
}

static const struct unit_case unit_json_cases[] = {
    {"json_valid", test_json_valid},
    {"json_invalid", test_json_invalid},
    {"json_append_restore", test_json_append_restore},
    {"json_depth", test_json_depth},
    {"json_prefix_count", test_json_prefix_count},
    {"json_truncated", test_json_truncated},
    {"json_large", test_json_large},
    {"json_put_string", test_json_put_string},
    {NULL, NULL}};
