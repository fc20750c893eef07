// A stop request: SIGTERM or SIGUSR1 (Slurm's preemption warning, scancel) sets a flag that
// long jobs look at between chunks, so that they commit their work and stop cleanly.
#pragma once

namespace align2 {

// Makes SIGTERM and SIGUSR1 request a stop (async-signal-safe: the handler only sets a flag).
void install_stop_handlers();
// The same request from code (tests), and the signal that made it (0 = none).
void request_stop(int signal_number);
int stop_requested();

}  // namespace align2
