// `webtrap oat`: prints the OWASP Automated Threats ontology compiled into
// this binary, as a table, as JSON, as the Markdown tables of docs/oat.md, or
// as a MISP taxonomy to import.
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "cli/commands.h"
#include "common/oat_export.h"
#include "common/oat_ontology.h"

namespace webtrap::cli {

void addOatCommand(CLI::App& app, CommandRunner& runner) {
  CLI::App* command = app.add_subcommand(
      "oat", "Print the OWASP Automated Threats (OAT) ontology that tags records");
  command->require_subcommand(1);

  struct View {
    const char* name;
    const char* help;
    std::string (*render)(const oat::Ontology&);
  };
  static const View kViews[] = {
      {"list", "Print a table of OAT-001 to OAT-021 with their references", oat::renderTable},
      {"json", "Print the whole ontology, request rules included, as JSON", oat::renderJson},
      {"markdown", "Print the Markdown tables that docs/oat.md embeds", oat::renderMarkdown},
      {"misp-taxonomy",
       "Print the MISP taxonomy (machinetag.json, namespace owasp-oat) to import into MISP",
       oat::renderMispTaxonomy},
  };
  for (const View& view : kViews) {
    CLI::App* sub = command->add_subcommand(view.name, view.help);
    sub->callback([&runner, render = view.render] {
      runner = [render] {
        std::string text = render(oat::Ontology::embedded());
        std::fwrite(text.data(), 1, text.size(), stdout);
        return std::fflush(stdout) == 0 ? 0 : 1;
      };
    });
  }
}

}  // namespace webtrap::cli
