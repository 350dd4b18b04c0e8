// Swagger UI for the generated description; a file of its own so the page
// runs under a Content-Security-Policy without inline scripts.
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger", persistAuthorization: false });
