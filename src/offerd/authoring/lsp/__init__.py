"""`offerd lsp`: a language server for ODL catalogs over stdio (diagnostics as you type, hover,
go to definition, references, completion, document symbols)."""
