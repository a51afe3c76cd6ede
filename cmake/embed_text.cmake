# Writes a C++ source file that defines a text file's contents as a raw
# string literal, so the binary carries the file without reading it at run
# time. Run as a script:
#   cmake -DINPUT=file.yaml -DOUTPUT=file.cpp -DNAMESPACE=a::b -DSYMBOL=kText -P embed_text.cmake
# It defines `extern const char SYMBOL[]` and `extern const std::size_t
# SYMBOL_size` (the length without the terminating NUL) in NAMESPACE.
foreach(variable INPUT OUTPUT NAMESPACE SYMBOL)
  if(NOT DEFINED ${variable})
    message(FATAL_ERROR "embed_text.cmake: -D${variable}=... is missing")
  endif()
endforeach()

file(READ "${INPUT}" text)
set(delimiter "webtrap_embedded")
string(FIND "${text}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains )${delimiter}\", which would end the "
                      "raw string literal early; change the delimiter in ${CMAKE_CURRENT_LIST_FILE}")
endif()

set(source "// Generated from ${INPUT} by cmake/embed_text.cmake. Do not edit.\n")
string(APPEND source "#include <cstddef>\n\nnamespace ${NAMESPACE} {\n\n")
string(APPEND source "extern const char ${SYMBOL}[];\nextern const std::size_t ${SYMBOL}_size;\n\n")
string(APPEND source "const char ${SYMBOL}[] = R\"${delimiter}(${text})${delimiter}\";\n")
string(APPEND source "const std::size_t ${SYMBOL}_size = sizeof(${SYMBOL}) - 1;\n\n")
string(APPEND source "}  // namespace ${NAMESPACE}\n")

# Rewriting an unchanged file would make every dependant rebuild.
if(EXISTS "${OUTPUT}")
  file(READ "${OUTPUT}" previous)
  if(previous STREQUAL source)
    return()
  endif()
endif()
file(WRITE "${OUTPUT}" "${source}")
