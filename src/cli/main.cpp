// webtrap: one executable with a subcommand per role.
#include <CLI/CLI.hpp>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"webtrap: a web honeypot with ModSecurity and a threat-intelligence pipeline"};
  app.set_version_flag("--version", WEBTRAP_VERSION);
  app.require_subcommand(1);

  webtrap::cli::CommandRunner runner;
  webtrap::cli::addProbeCommand(app, runner);
  webtrap::cli::addReplayCommand(app, runner);

  CLI11_PARSE(app, argc, argv);
  return runner ? runner() : 0;
}
