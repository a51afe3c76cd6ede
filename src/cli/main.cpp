// webtrap: one executable with a subcommand per role.
#include <cstdio>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands.h"
#include "common/error.h"

int main(int argc, char** argv) {
  CLI::App app{"webtrap: a web honeypot with ModSecurity and a threat-intelligence pipeline"};
  app.set_version_flag("--version", WEBTRAP_VERSION);
  app.require_subcommand(1);

  webtrap::cli::CommandRunner runner;
  webtrap::cli::addProbeCommand(app, runner);
  webtrap::cli::addReplayCommand(app, runner);
  webtrap::cli::addDecodeCommand(app, runner);
  webtrap::cli::addShipCommand(app, runner);
  webtrap::cli::addCollectorCommand(app, runner);
  webtrap::cli::addOatCommand(app, runner);

  CLI11_PARSE(app, argc, argv);
  if (!runner) {
    return 0;
  }
  try {
    return runner();
  } catch (const webtrap::CommandError& error) {
    fmt::print(stderr, "webtrap: {}\n", error.what());
    return 2;
  } catch (const webtrap::ConfigError& error) {
    fmt::print(stderr, "webtrap: configuration error: {}\n", error.what());
    return 2;
  } catch (const CLI::Error& error) {
    return app.exit(error);
  } catch (const std::exception& error) {
    fmt::print(stderr, "webtrap: failed: {}\n", error.what());
    return 1;
  }
}
