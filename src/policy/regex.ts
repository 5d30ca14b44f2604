// The policy's /regular expressions/ run on every command argument a client sends, on the one thread
// that serves every session. A backtracking engine (JavaScript's) lets one 40-byte argument against
// /^([\w.-]+\/?)*$/ stall the daemon for minutes; RE2 matches in time linear in the argument, whatever
// the pattern. What RE2 cannot do in linear time (backreferences, lookahead, lookbehind) it refuses, and
// so does the policy file, at load, with file:line.
import RE2 from 're2';

/** A compiled pattern, or why the file's pattern cannot be used. */
export function compilePattern(source: string, flags: string): RegExp | { error: string } {
  try {
    new RegExp(source, flags); // JavaScript's own syntax check first: its messages name the mistake
  } catch (e) {
    return { error: `bad regular expression: ${(e as Error).message}` };
  }
  try {
    return new RE2(source, flags);
  } catch (e) {
    return {
      error: `regular expression /${source}/ not supported: ${(e as Error).message} (backreferences and lookaround cannot be matched in linear time)`,
    };
  }
}
