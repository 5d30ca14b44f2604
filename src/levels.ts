// syslog(3) priorities, which -D selects among (a message is logged when its priority <= the -D level).
export const LOG_EMERG = 0;
export const LOG_ALERT = 1;
export const LOG_CRIT = 2;
export const LOG_ERR = 3;
export const LOG_WARNING = 4;
export const LOG_NOTICE = 5;
export const LOG_INFO = 6;
export const LOG_DEBUG = 7;

export type Level = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7;

export const LEVEL_NAMES = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'] as const;
