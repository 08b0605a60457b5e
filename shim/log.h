/* log.h: one-line messages on stderr, never on the host's stdout. */
#ifndef GRPCPROM_LOG_H
#define GRPCPROM_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level level);
/* Writes "grpcprom: <message>\n" with one write(2) when level is enabled. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
