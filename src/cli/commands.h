// Subcommand registration. Each add*Command declares its options on `app` and,
// when its subcommand is chosen, sets `runner` to the function that runs it.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace webtrap::cli {

using CommandRunner = std::function<int()>;

void addProbeCommand(CLI::App& app, CommandRunner& runner);
void addReplayCommand(CLI::App& app, CommandRunner& runner);
void addDecodeCommand(CLI::App& app, CommandRunner& runner);
void addShipCommand(CLI::App& app, CommandRunner& runner);
void addCollectorCommand(CLI::App& app, CommandRunner& runner);
void addOatCommand(CLI::App& app, CommandRunner& runner);

}  // namespace webtrap::cli
