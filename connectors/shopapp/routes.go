package shopapp

// Route templates of the partner API: the endpoint of an *APIError, the endpoint label of the
// metrics and the keys of Simulator.Calls. They never hold a key, a code or a token.
const (
	RouteToken                = "GET /token"
	RouteInterfaces           = "GET /interfaces"
	RouteInterface            = "GET /interfaces/{cle}"
	RouteCreateInterface      = "POST /interfaces"
	RouteDeleteInterface      = "DELETE /interfaces/{cle}"
	RouteReactivateInterface  = "POST /interfaces/{cle}"
	RouteInterfacePrestations = "GET /interfaces/{cle}/prestations"
	RouteAddPrestations       = "POST /interfaces/{cle}/prestations"
	RouteInterfacePrestation  = "GET /interfaces/{cle}/prestations/{code}"
	RouteCancelPrestation     = "DELETE /interfaces/{cle}/prestations/{code}"
	RoutePrestations          = "GET /prestations"
	RoutePrestation           = "GET /prestation/{code}"
	// RouteUnknown counts, in Simulator.Calls, the requests that match no route.
	RouteUnknown = "unknown"
)

// Routes lists the route templates of the API, RouteUnknown aside.
func Routes() []string {
	return []string{
		RouteToken, RouteInterfaces, RouteInterface, RouteCreateInterface, RouteDeleteInterface,
		RouteReactivateInterface, RouteInterfacePrestations, RouteAddPrestations,
		RouteInterfacePrestation, RouteCancelPrestation, RoutePrestations, RoutePrestation,
	}
}
