/*
 * showargs: a test program for the PAL tests. It writes to stdout, each item
 * followed by a NUL byte: "ARGV", every argv element, "ENV", every environ
 * element, "STDIN", everything read from stdin; and the line
 * "showargs-stderr" to stderr. It exits 0.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static void put(const char *s)
{
	fwrite(s, 1, strlen(s) + 1, stdout);
}

int main(int argc, char *argv[])
{
	put("ARGV");
	for (int i = 0; i < argc; i++)
		put(argv[i]);
	put("ENV");
	for (char **e = environ; *e; e++)
		put(*e);
	put("STDIN");
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0)
		fwrite(buf, 1, n, stdout);
	fputc('\0', stdout);
	fflush(stdout);
	fputs("showargs-stderr\n", stderr);
	return 0;
}
