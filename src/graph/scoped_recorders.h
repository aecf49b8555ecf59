// Sets this thread's tape, tracer and trace scope for a C++ scope and restores the previous
// ones on exit (exceptions included): traces must not land on an outer tape, and constant
// folding must run eagerly even while a trace is being built.
#pragma once

#include "core/context.h"

namespace kiln::graph {

class ScopedRecorders {
 public:
  ScopedRecorders(detail::TapeRecorder* tape, detail::TraceRecorder* tracer,
                  detail::TraceScope* scope)
      : ctx_(detail::thread_context()),
        tape_(ctx_.tape),
        tracer_(ctx_.tracer),
        scope_(ctx_.trace_scope) {
    ctx_.tape = tape;
    ctx_.tracer = tracer;
    ctx_.trace_scope = scope;
  }
  ~ScopedRecorders() {
    ctx_.tape = tape_;
    ctx_.tracer = tracer_;
    ctx_.trace_scope = scope_;
  }
  ScopedRecorders(const ScopedRecorders&) = delete;
  ScopedRecorders& operator=(const ScopedRecorders&) = delete;

 private:
  detail::ThreadContext& ctx_;
  detail::TapeRecorder* tape_;
  detail::TraceRecorder* tracer_;
  detail::TraceScope* scope_;
};

}  // namespace kiln::graph
