"""One module per page. Streamlit runs each file as ``__main__``; importing one (as the
layout tests do) draws nothing."""
