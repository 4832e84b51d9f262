// When an invariant need not be evaluated: the elements whose absence alone
// decides that it holds.
//
// Most invariants of the R4 specification begin at an element of their
// context and pass when that element is absent (dom-2..dom-5 start at
// `contained`, att-1 at `data`). The FHIRPath text is analysed once, when the
// invariant is compiled: with some of its leading elements taken as absent,
// the boolean operators are evaluated over the possible results {true, false,
// empty} (FHIRPath's three-valued logic); a set of absent elements for which
// every possible outcome passes (true or empty: only an explicit false fails)
// is an alternative. Expressions or parts the analysis does not understand
// count as "any result", so the answer errs towards evaluating.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "espace/fhir/node.h"

namespace espace::profiles {

struct InvariantGuard {
  // Each alternative: element names that, all absent from the context node,
  // make the invariant hold. Empty list: always evaluate.
  std::vector<std::vector<std::string>> pass_when_absent;

  // True when the invariant is known to hold on `node` without evaluating it.
  bool holds_without_evaluation(const fhir::Node& node) const;
};

InvariantGuard analyse_invariant(std::string_view expression);

}  // namespace espace::profiles
